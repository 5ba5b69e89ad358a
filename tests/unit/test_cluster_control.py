"""The control plane's group side without a broker: presence payloads, member names on replies, and
how `arros sub` prints a group's replies."""

from __future__ import annotations

import orjson

from arros_mqtt.control.cli import _print_group
from arros_mqtt.control.client import GroupReplies, _note_member
from arros_mqtt.control.membership import member_presence, member_status_topic, members_topic, with_member


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


def test_list_prints_one_row_per_member(capsys):
    code = _print_group("list", GroupReplies([rows("m1", 7), rows("m0", 5)], []), as_json=False)
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].split() == ["NAME", "MEMBER", "ORIGIN", "KIND", "STREAM", "OUTPUT", "STATE", "ROWS_OUT"]
    assert [line.split()[:2] + line.split()[-1:] for line in out[1:]] == [["hot", "m0", "5"], ["hot", "m1", "7"]]


def test_a_refusing_or_silent_member_fails_the_command(capsys):
    refused = {"member": "m1", "ok": False, "error": {"code": "forbidden", "message": "windows ... not supported yet"}}
    code = _print_group("create", GroupReplies([rows("m0", 0), refused], ["m2"]), as_json=False)
    err = capsys.readouterr().err
    assert code == 1
    assert "member m1: forbidden: windows ... not supported yet" in err
    assert "member m2 did not answer" in err
