"""One ``mgha.Engine`` in this process, driven line by line on stdin, for the failover test
(``test_failover.py``) that runs several of these processes and SIGKILLs the Active one.

    python failover_node.py init CONFIG.json          # a new cluster's Primary
    python failover_node.py join CONFIG.json PEER KEY # a Secondary joins it
    python failover_node.py run CONFIG.json           # opens the node again

CONFIG.json holds the engine's config mapping (docs/config.md keys, failover included). Once the
engine runs the process prints ``{"ready": true}``, then answers each command with one JSON line,
``{"ok": VALUE}`` or ``{"error": "MGHA_...", "message": "..."}``:

    peer | join-key | status | collisions | publish NAME | get NAME | merge ID | quit
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Dict

import mgha


def commands(engine: mgha.Engine) -> Dict[str, Callable[[str], Any]]:
    def publish(name: str) -> int:
        changeset = {"message": name, "changes": [
            {"op": "put", "type": "host", "name": name, "fields": {"ipv4-address": "10.0.0.1"}}]}
        return engine.publish(changeset, author="failover-node")

    return {
        "peer": lambda _: engine.peer_addr,
        "join-key": lambda _: engine.join_key(600),
        "status": lambda _: engine.status(),
        "collisions": lambda _: engine.collisions(),
        "publish": publish,
        "get": lambda name: engine.get("host", name),
        "merge": lambda branch: engine.resolve_collision(int(branch), "merge", author="failover-node"),
    }


def main(argv: list) -> int:
    mode, config = argv[1], json.loads(open(argv[2], encoding="utf-8").read())
    if mode == "init":
        engine = mgha.Engine.init(config)
    elif mode == "join":
        engine = mgha.Engine.join(config, argv[3], argv[4])
    else:
        engine = mgha.Engine.open(config)
    table = commands(engine)
    print(json.dumps({"ready": True}), flush=True)
    with engine:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "quit":
                break
            try:
                if command not in table:
                    raise ValueError(f"unknown command {command!r}")
                answer: Dict[str, Any] = {"ok": table[command](argument)}
            except ValueError as e:
                answer = {"error": "usage", "message": str(e)}
            except mgha.Error as e:
                answer = {"error": e.code_name, "message": e.message}
            print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
