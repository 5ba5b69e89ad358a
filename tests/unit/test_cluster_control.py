"""The control plane's group side without a broker: presence payloads, member names on replies, how
`arros sub` prints a group's replies, and which catalogue version wins."""

from __future__ import annotations

import orjson

from arros_mqtt.control.cli import _print_group
from arros_mqtt.control.client import GroupReplies, _note_member
from arros_mqtt.control.membership import member_presence, member_status_topic, members_topic, with_member
from arros_mqtt.control.store import StoredSubscription, SubscriptionStore
from arros_mqtt.control.versions import (
    ADOPT,
    DROP,
    KEEP,
    REPUBLISH,
    TAKE,
    decide,
    entry_version,
    is_tombstone,
    stored_version,
    tombstone,
    version_of,
)


def test_presence_online_and_its_will():
    presence = member_presence("arros", "site-a", "m1", now=1.5)
    assert presence.topic == members_topic("arros", "m1") == "arros/members/m1"
    assert orjson.loads(presence.online) == {"member": "m1", "group": "site-a", "since": 1.5, "online": True}
    assert orjson.loads(presence.offline)["online"] is False
    assert member_status_topic("arros", "hot", "m1") == "arros/status/hot/m1"


def test_replies_carry_the_member():
    reply = orjson.dumps({"request_id": "r1", "ok": True, "result": {}})
    assert orjson.loads(with_member(reply, "m0")) == {"request_id": "r1", "ok": True, "result": {}, "member": "m0"}


def test_the_client_tracks_members_online():
    online: set[str] = set()
    _note_member(online, "m0", member_presence("a", "g", "m0").online)
    _note_member(online, "m1", member_presence("a", "g", "m1").online)
    _note_member(online, "m1", member_presence("a", "g", "m1").offline)
    _note_member(online, "m2", b"not json")
    _note_member(online, "m3", b"")  # a cleared retained message
    assert online == {"m0"}


def rows(member: str, rows_out: int) -> dict:
    return {"member": member, "ok": True, "result": {"subscriptions": [
        {"name": "hot", "origin": "config", "kind": "per_row", "stream": "t", "output": "o/{machine}",
         "paused": False, "rows_out": rows_out}]}}


def test_list_members_prints_one_row_per_member(capsys):
    code = _print_group("list", GroupReplies([rows("m1", 7), rows("m0", 5)], []), as_json=False, members=True)
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split() == ["NAME", "MEMBER", "ORIGIN", "KIND", "STREAM", "OUTPUT", "STATE", "ROWS_IN", "ROWS_OUT"]
    assert [line.split()[:2] + line.split()[-1:] for line in out[1:]] == [["hot", "m0", "5"], ["hot", "m1", "7"]]


def test_list_prints_one_merged_row_per_subscription(capsys):
    code = _print_group("list", GroupReplies([rows("m1", 7), rows("m0", 5)], []), as_json=False)
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split() == ["NAME", "ORIGIN", "KIND", "STREAM", "OUTPUT", "STATE", "MEMBERS", "WHERE", "ROWS_IN",
                              "ROWS_OUT"]
    assert [line.split() for line in out[1:]] == [["hot", "config", "per_row", "t", "o/{machine}", "running", "2",
                                                   "m0,m1", "-", "12"]]


def test_a_refusing_or_silent_member_fails_the_command(capsys):
    refused = {"member": "m1", "ok": False, "error": {"code": "forbidden", "message": "windows ... not supported yet"}}
    code = _print_group("create", GroupReplies([rows("m0", 0), refused], ["m2"]), as_json=False)
    err = capsys.readouterr().err
    assert code == 1
    assert "member m1: forbidden: windows ... not supported yet" in err
    assert "member m2 did not answer" in err


def _stored(created_at: str, member: str | None, sql: str = "SELECT 1") -> StoredSubscription:
    return StoredSubscription("s", {"sql": sql}, created_at, version=version_of(created_at, member))


def test_the_newer_definition_or_tombstone_wins():
    own = _stored("2026-12-06T10:00:00.000Z", "m1")
    newer, older = "2026-12-06T11:00:00.000Z/m0", "2026-12-06T09:00:00.000Z/m0"
    assert decide(None, {"sql": "x", "version": newer}, False) == ADOPT
    assert decide(None, tombstone("s", newer), False) == KEEP  # dropped, and we never had it
    assert decide(own, tombstone("s", newer), False) == DROP
    assert decide(own, tombstone("s", older), False) == REPUBLISH  # created again after that drop
    assert decide(own, {"sql": "x", "version": newer}, False) == TAKE
    assert decide(own, {"sql": "x", "version": older}, False) == REPUBLISH  # ours is newer: not overwritten
    assert decide(own, {"sql": "SELECT 1", "version": newer}, True) == KEEP  # the same, from another member


def test_versions_order_by_time_then_member_and_older_entries_by_created_at():
    assert version_of("2026-12-06T10:00:00.000Z", "m0") < version_of("2026-12-06T10:00:00.000Z", "m1") \
        < version_of("2026-12-06T10:00:00.001Z", "a")
    legacy = StoredSubscription("s", {"sql": "SELECT 1"}, "2026-12-06T10:00:00.000Z")
    assert stored_version(legacy) == "2026-12-06T10:00:00.000Z/"
    assert entry_version({"created_at": "2026-12-06T10:00:00.000Z"}) == stored_version(legacy)
    assert entry_version({}) == ""  # no version, no created_at: older than anything
    assert is_tombstone(tombstone("s", "v")) and not is_tombstone({"name": "s", "sql": "SELECT 1"})


def test_the_store_keeps_the_version(tmp_path):
    store = SubscriptionStore(tmp_path)
    store.put(_stored("2026-12-06T10:00:00.000Z", "m1"))
    store.put(StoredSubscription("old", {"sql": "SELECT 2"}, "2026-12-06T09:00:00.000Z"))
    loaded = SubscriptionStore(tmp_path).load()
    assert loaded["s"].version == "2026-12-06T10:00:00.000Z/m1" and loaded["old"].version is None
