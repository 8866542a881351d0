"""The failover test that README.md shows runs as written."""

from __future__ import annotations

import re

from conftest import REPO


def test_the_readme_failover_example_passes(cluster):
    readme = (REPO / "bindings" / "python" / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.splitlines()) < 30, "the example stays short"
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    namespace["test_forced_failover_keeps_the_old_actives_work"](cluster)
