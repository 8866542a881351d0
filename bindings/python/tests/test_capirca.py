"""A real policy written by someone else: capirca's sample multi-target policy (``data/capirca``,
copied from google/capirca), parsed by capirca's own parser with its sample definitions,
converted to an mgha changeset the way a migration script would (an empty side is ``["Any"]``,
as Check Point's management API writes it), published on an Active and read back on a Standby,
in engines and daemons alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

DATA = Path(__file__).resolve().parent / "data" / "capirca"
POLICY = DATA / "policies" / "pol" / "sample_multitarget.pol"

#: capirca's actions and the access rule's.
ACTIONS = {"accept": "accept", "deny": "drop", "reject": "reject", "reject-with-tcp-rst": "reject"}


def parse() -> List[Tuple[str, List[Any]]]:
    """The policy's filters as capirca parses them: (a layer name, its terms)."""
    naming = pytest.importorskip("capirca.lib.naming", reason="capirca is installed by scripts/test")
    from capirca.lib import policy

    defs = naming.Naming(str(DATA / "def"))
    parsed = policy.ParsePolicy(POLICY.read_text(), defs, optimize=False, base_dir=str(DATA / "policies"))
    return [(f"capirca-{i + 1}", terms) for i, (_, terms) in enumerate(parsed.filters)]


def address_object(a: Any) -> Dict[str, Any]:
    """The host (a full-length prefix) or network object of one capirca address."""
    v4 = a.version == 4
    if a.prefixlen == (32 if v4 else 128):
        name = f"h-{a.network_address}"
        return {"type": "host", "name": name,
                "fields": {"ipv4-address" if v4 else "ipv6-address": str(a.network_address)}}
    name = f"n-{a.network_address}-{a.prefixlen}"
    subnet, length = ("subnet4", "mask-length4") if v4 else ("subnet6", "mask-length6")
    return {"type": "network", "name": name, "fields": {subnet: str(a.network_address), length: a.prefixlen}}


def convert(filters: List[Tuple[str, List[Any]]]) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
    """The changeset, and each converted rule by name (what the test expects back)."""
    objects: Dict[Tuple[str, str], Dict[str, Any]] = {}
    groups: Dict[str, set] = {}
    rules: Dict[str, Dict[str, Any]] = {}

    def side(addresses: List[Any]) -> Any:
        if not addresses:
            return ["Any"]
        tokens = []
        for a in addresses:
            o = address_object(a)
            objects[(o["type"], o["name"])] = o
            token = getattr(a, "parent_token", None) or a.token
            groups.setdefault(token, set()).add(o["name"])
            if token not in tokens:
                tokens.append(token)
        return tokens

    for layer, terms in filters:
        objects[("access-layer", layer)] = {"type": "access-layer", "name": layer, "fields": {}}
        position = 0
        for t in terms:
            action = ACTIONS.get(t.action[0]) if t.action else None
            protocols = list(t.protocol)
            if action is None or any(p not in ("tcp", "udp") for p in protocols):
                continue  # `next`, or a protocol the built-in services do not model (icmp, ...)
            services: Any = []
            for p in protocols:
                ports = t.destination_port or [(1, 65535)]
                for lo, hi in ports:
                    name = f"{p}-{lo}" if lo == hi else f"{p}-{lo}-{hi}"
                    objects[(f"service-{p}", name)] = {
                        "type": f"service-{p}", "name": name, "fields": {"port": str(lo) if lo == hi else f"{lo}-{hi}"}}
                    services.append(name)
            position += 1
            rule = {"layer": layer, "position": position, "source": side(t.source_address),
                    "destination": side(t.destination_address), "service": services or ["Any"], "action": action}
            rules[f"{layer}/{t.name}"] = rule
    changes = [{"op": "put", **o} for o in objects.values()]
    changes += [{"op": "put", "type": "group", "name": g, "fields": {"members": sorted(m)}} for g, m in groups.items()]
    changes += [{"op": "put", "type": "access-rule", "name": n, "fields": r} for n, r in rules.items()]
    return {"message": f"capirca {POLICY.name}", "changes": changes}, rules


@pytest.mark.parametrize("mode", ["engines", "daemons"])
def test_the_capirca_sample_policy_converts_publishes_and_replicates(cluster, mode):
    changeset, rules = convert(parse())
    assert len(rules) >= 8, "the sample's filters hold at least eight tcp/udp/any terms"
    any_sides = [n for n, r in rules.items() if r["source"] == ["Any"]]
    assert any_sides, "the sample has rules from any source, written [\"Any\"]"
    c = cluster(2, mode)
    active, standby = c["a"], c["b"]
    seq = active.publish(changeset)
    assert c.wait_synced() == seq
    stored = {o["name"]: o for o in standby.list("access-rule")}
    assert set(stored) == set(rules)
    for name in any_sides:
        assert stored[name]["fields"]["source"] == "Any", "[\"Any\"] is stored as \"Any\""
    # A rule with named sides: its references resolve to the converted groups and services.
    mail = stored["capirca-1/permit-mail-services"]["fields"]
    mail_group = standby.get("group", "MAIL_SERVERS")
    assert mail["destination"] == [mail_group["uid"]]
    hosts = {standby.get("host", f"h-200.1.1.{i}")["uid"] for i in (4, 5)}
    assert set(mail_group["fields"]["members"]) == hosts
    smtp = standby.get("service-tcp", "tcp-25")
    assert smtp["uid"] in mail["service"] and smtp["fields"]["port"] == "25"
    assert stored["capirca-1/default-deny"]["fields"]["action"] == "drop"
