"""Bad input raises the exception class of its status code, with a message that says what is
wrong and where; the classes match the library's status codes one to one."""

from __future__ import annotations

import threading

import pytest

import mgha
from conftest import changes, host
from mgha import _lib
from mgha.errors import CLASSES, CODE_NAMES, error_for


def test_every_status_code_has_its_class_and_the_librarys_name():
    for code, name in CODE_NAMES.items():
        assert _lib.ffi.string(_lib.lib().mgha_status_name(code)).decode() == name
        if code:
            assert CLASSES[code].code_value == code
            assert issubclass(CLASSES[code], mgha.Error)
    assert _lib.ffi.string(_lib.lib().mgha_status_name(len(CODE_NAMES))).decode() == "MGHA_UNKNOWN"
    e = error_for(8, "publish on the active node 'a'")
    assert isinstance(e, mgha.ReadOnly) and str(e) == "MGHA_READ_ONLY: publish on the active node 'a'"


def test_raw_calls_report_null_arguments_by_name():
    with pytest.raises(mgha.NullArgument, match="config_toml is NULL"):
        _lib.check(_lib.lib().mgha_engine_init(_lib.ffi.NULL, _lib.ffi.new("mgha_engine **")))
    with pytest.raises(mgha.InvalidUtf8, match="byte 1"):
        _lib.check(_lib.lib().mgha_engine_init(b"a\xff", _lib.ffi.new("mgha_engine **")))


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(mgha.InvalidArgument, match="colour") as bad:
        mgha.Engine.init({"data_dir": str(tmp_path / "x"), "name": "x", "listen": "127.0.0.1:0", "colour": "blue"})
    assert (bad.value.code, bad.value.code_name) == (4, "MGHA_INVALID_ARGUMENT")
    assert "colour" in bad.value.message
    with pytest.raises(mgha.InvalidArgument, match="key 'name': is required"):
        mgha.Engine.init({"data_dir": str(tmp_path / "y"), "listen": "127.0.0.1:0"})
    with pytest.raises(mgha.TooLarge):
        mgha.Engine.init("# " + "x" * 70_000)
    with pytest.raises(mgha.InvalidArgument, match="cannot be written"):
        mgha.Engine.init({"data_dir": str(tmp_path), "nested": {"a": 1}})


def test_engine_errors_carry_the_engines_message(tmp_engine):
    e = tmp_engine
    with pytest.raises(mgha.ValidationError, match="host 'x'.*ipv4-address"):
        e.publish(changes({"op": "put", "type": "host", "name": "x", "fields": {}}))
    with pytest.raises(mgha.ValidationError, match="refers to 'nobody'"):
        e.publish(changes({"op": "put", "type": "group", "name": "g", "fields": {"members": ["nobody"]}}))
    with pytest.raises(mgha.InvalidArgument, match="changeset"):
        e.publish("{not json")
    with pytest.raises(mgha.NotFound, match="web9"):
        e.get("host", "web9")
    with pytest.raises(mgha.InvalidArgument, match="key contains a NUL"):
        e.get("host", "web\0evil")
    with pytest.raises(mgha.NotFound):
        e.collision_diff(99)
    with pytest.raises(mgha.InvalidArgument, match="none of"):
        e.resolve_collision(1, "both")
    e.publish(changes(host("web1", "10.0.0.1")))
    with e.session("alice") as first, e.session("bob") as second:
        first.put({"type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.2"}})
        with pytest.raises(mgha.Conflict, match="locked by session"):
            second.put({"type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.3"}})


def test_a_second_engine_on_the_same_directory_is_busy_and_a_used_key_is_refused(cluster):
    c = cluster(1)
    a = c["a"]
    with pytest.raises(mgha.Busy):
        mgha.Engine.open({"data_dir": str(a.dir), "listen": "127.0.0.1:0"})
    key = a.join_key()
    c2 = cluster(1)  # another cluster joins nothing with a's key twice
    with mgha.Engine.join({"data_dir": str(c2.dir / "x"), "name": "x", "listen": "127.0.0.1:0"}, a.address, key):
        pass
    with pytest.raises(mgha.PeerError, match="already used|used"):
        mgha.Engine.join({"data_dir": str(c2.dir / "y"), "name": "y", "listen": "127.0.0.1:0"}, a.address, key)


def test_a_closed_engine_refuses_calls_and_closes_once(tmp_path):
    engine = mgha.Engine.init({"data_dir": str(tmp_path / "n"), "name": "n", "listen": "127.0.0.1:0"})
    engine.close()
    engine.close()
    assert engine.closed
    with pytest.raises(mgha.InvalidArgument, match="closed"):
        engine.status()


def test_errors_stay_on_the_thread_that_made_them(tmp_engine):
    messages = []

    def fail() -> None:
        try:
            tmp_engine.get("host", "other-thread")
        except mgha.NotFound as e:
            messages.append(e.message)

    threads = [threading.Thread(target=fail) for _ in range(4)]
    for t in threads:
        t.start()
    with pytest.raises(mgha.NotFound, match="main-thread"):
        tmp_engine.get("host", "main-thread")
    for t in threads:
        t.join()
    assert len(messages) == 4 and all("other-thread" in m for m in messages)
