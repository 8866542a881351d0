"""Backups through the bindings: an online backup of a Standby, verified, restored into a new
node that holds the same state; and the errors of each step."""

from __future__ import annotations

import pytest

import mgha
from conftest import changes, group, host


def test_backup_of_a_standby_restores_to_the_same_state(cluster, tmp_path):
    c = cluster(2)
    c["a"].publish(changes(host("web1", "10.0.0.1"), group("web", ["web1"])))
    c["a"].publish(changes(host("web2", "10.0.0.2")))
    c.wait_synced()
    standby = c["b"].engine
    path = tmp_path / "b.mgha-backup"
    standby.backup(path)
    summary = mgha.verify_backup(path)
    assert summary["header"]["head"]["seq"] == 2
    assert summary["header"]["objects"] == 3
    with pytest.raises(mgha.InvalidArgument, match="already exists"):
        standby.backup(path)

    restored_dir = tmp_path / "restored"
    mgha.restore_backup(path, {"data_dir": str(restored_dir)})
    with mgha.Engine.open({"data_dir": str(restored_dir), "listen": "127.0.0.1:0"}) as restored:
        assert restored.status()["head"] == standby.status()["head"]
        assert restored.list() == standby.list()
        assert restored.check()["objects"] == 3
        with pytest.raises(mgha.NotFound, match="without peers"):
            restored.peer_addr
    with pytest.raises(mgha.InvalidArgument, match="already holds"):
        mgha.restore_backup(path, {"data_dir": str(restored_dir)})


def test_a_damaged_or_missing_backup_is_refused(tmp_path):
    with pytest.raises(mgha.NotFound):
        mgha.verify_backup(tmp_path / "nothing-here")
    bad = tmp_path / "bad.mgha-backup"
    bad.write_bytes(b"not a backup at all" * 100)
    with pytest.raises(mgha.Corrupt):
        mgha.verify_backup(bad)
