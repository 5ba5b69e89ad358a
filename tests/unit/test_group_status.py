"""Merging a group's per-member statuses (control/groupstatus.py) and how `arros sub` prints them: sums, the
worst state, members gone or silent with their last retained status, and dropped subscriptions left out."""

from __future__ import annotations

import orjson

from arros_mqtt.control.cli import _print_group
from arros_mqtt.control.client import GroupReplies, _note_member, _note_status
from arros_mqtt.control.groupstatus import NO_REPLY, OFFLINE, PAUSED, RUNNING, Share, merge, merged, shares, where
from arros_mqtt.control.membership import member_presence


def row(name: str, rows_in: int, rows_out: int, paused: bool = False) -> dict:
    return {"name": name, "origin": "config", "kind": "per_row", "stream": "t", "output": "o/{machine}",
            "paused": paused, "rows_in": rows_in, "rows_out": rows_out}


def status(name: str, member: str, rows_in: int, rows_out: int, paused: bool = False) -> dict:
    """A retained status as a member publishes it (no stream or output)."""
    return {"name": name, "origin": "config", "kind": "per_row", "paused": paused,
            "paused_reason": "paused by request" if paused else None, "rows_in": rows_in, "rows_out": rows_out,
            "errors": 0, "member": member, "at": "2026-12-06T14:00:00.000Z"}


def test_counters_sum_and_the_worst_state_wins():
    found = shares({"m0": [row("hot", 60, 30), row("cold", 1, 1)], "m1": [row("hot", 40, 20, paused=True)]},
                   {}, set(), set())
    assert [(s.name, s.member, s.state) for s in found] == [("cold", "m0", RUNNING), ("hot", "m0", RUNNING),
                                                            ("hot", "m1", PAUSED)]
    hot = merge([s for s in found if s.name == "hot"])
    assert (hot["state"], hot["members"], hot["offline"]) == (PAUSED, ["m0", "m1"], [])
    assert (hot["rows_in"], hot["rows_out"]) == (100, 50)
    assert hot["stream"] == "t" and hot["output"] == "o/{machine}"
    assert [m["name"] for m in merged(found)] == ["cold", "hot"]


def test_a_gone_member_shows_with_its_last_retained_status():
    retained = {("hot", "m1"): status("hot", "m1", 40, 20), ("hot", "m2"): status("hot", "m2", 5, 5),
                ("gone", "m1"): status("gone", "m1", 9, 9),  # dropped: no member that answered runs it
                ("hot", "m0"): status("hot", "m0", 1, 1)}  # older than m0's reply: the reply wins
    found = shares({"m0": [row("hot", 60, 30)]}, retained, offline={"m1"}, missing={"m2"})
    assert [(s.member, s.state) for s in found] == [("m0", RUNNING), ("m1", OFFLINE), ("m2", NO_REPLY)]
    assert found[1].status["stream"] == "t"  # described like the answering member's
    hot = merge(found)
    assert (hot["state"], hot["members"], hot["offline"]) == (RUNNING, ["m0"], ["m1", "m2"])
    assert (hot["rows_in"], hot["rows_out"]) == (105, 55)
    assert where(hot) == "m0,m1(offline),m2(offline)"


def test_a_member_with_no_presence_is_not_counted():
    found = shares({"m0": [row("hot", 1, 1)]}, {("hot", "old"): status("hot", "old", 7, 7)}, set(), set())
    assert [s.member for s in found] == ["m0"]


def test_every_member_gone_is_offline():
    gone = merge([Share("hot", "m1", OFFLINE, status("hot", "m1", 2, 2))])
    assert (gone["state"], gone["members"], gone["offline"], gone["rows_in"]) == (OFFLINE, [], ["m1"], 2)


def test_the_client_collects_offline_members_and_retained_statuses():
    online: set[str] = set()
    offline: set[str] = set()
    _note_member(online, "m0", member_presence("a", "g", "m0").online, offline)
    _note_member(online, "m1", member_presence("a", "g", "m1").offline, offline)
    _note_member(online, "m2", b"", offline)  # cleared: neither
    assert (online, offline) == ({"m0"}, {"m1"})
    statuses: dict = {}
    _note_status(statuses, "hot/m1", orjson.dumps(status("hot", "m1", 3, 3)))
    _note_status(statuses, "cold/m1", orjson.dumps(status("cold", "m1", 3, 3)))
    _note_status(statuses, "cold/m1", b"")  # dropped: cleared
    _note_status(statuses, "bad/m1", b"{not json")
    assert list(statuses) == [("hot", "m1")]


def reply(member: str, *subscriptions: dict) -> dict:
    return {"member": member, "ok": True, "result": {"subscriptions": list(subscriptions)}}


def test_list_marks_an_offline_member_and_members_shows_its_share(capsys):
    answers = GroupReplies([reply("m0", row("hot", 60, 30))], [], offline=["m1"],
                           statuses={("hot", "m1"): status("hot", "m1", 40, 20)})
    assert _print_group("list", answers, as_json=False) == 0
    out = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert out[1] == ["hot", "config", "per_row", "t", "o/{machine}", "running", "1", "m0,m1(offline)", "100", "50"]
    assert _print_group("list", answers, as_json=False, members=True) == 0
    out = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [(line[1], line[6], line[7]) for line in out[1:]] == [("m0", "running", "60"), ("m1", "offline", "40")]


def describe(member: str, rows_in: int, paused: bool = False) -> dict:
    return {"member": member, "ok": True, "result": {
        "name": "hot", "origin": "config", "kind": "per_row", "output": "o/{machine}", "stream": {"name": "t"},
        "status": status("hot", member, rows_in, rows_in, paused)}}


def test_status_prints_the_merged_status_and_each_member(capsys):
    answers = GroupReplies([describe("m1", 4, paused=True), describe("m0", 6)], [])
    assert _print_group("status", answers, as_json=False) == 0
    out = capsys.readouterr().out.splitlines()
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in out if not line.startswith(
        ("MEMBER", "m0 ", "m1 "))}
    assert fields["state"] == "paused" and fields["members"] == "m0, m1" and fields["rows_in"] == "10"
    assert fields["paused_reasons"] == "paused by request"
    table = [line.split() for line in out if line.startswith(("m0 ", "m1 "))]
    assert [(t[0], t[1], t[2]) for t in table] == [("m0", "running", "6"), ("m1", "paused", "4")]
