"""Every control reply fits in MQTT and in `MAX_REPLY_BYTES` (issue 20 item 2): `explain` of a query
whose plan holds a large constant used to build a reply past the MQTT maximum, which raised in the
callback and left the request without its one reply."""

from __future__ import annotations

import orjson

from arros_mqtt.control.protocol import MAX_REPLY_BYTES, ok_reply


def test_a_reply_with_long_plans_is_cut_with_a_marker_and_stays_within_the_bound():
    plan = "Projection: " + "a" * 3_000_000
    reply = ok_reply("r-1", {"name": None, "logical_plan": plan, "physical_plan": plan, "kind": "per_row"})
    assert len(reply) <= MAX_REPLY_BYTES
    body = orjson.loads(reply)
    assert body["ok"] and body["request_id"] == "r-1" and body["result"]["kind"] == "per_row"
    for key in ("logical_plan", "physical_plan"):
        text = body["result"][key]
        assert text.startswith("Projection: aaa") and text.endswith(f"of {len(plan)} characters]")


def test_a_small_reply_is_unchanged_and_one_that_cannot_be_cut_is_limit_exceeded():
    result = {"subscriptions": [{"name": f"s{i}", "rows_out": i} for i in range(10)]}
    assert orjson.loads(ok_reply(7, result))["result"] == result
    many = {"subscriptions": [{"name": f"s{i}", "rows_out": i} for i in range(40_000)]}
    body = orjson.loads(ok_reply(7, many))
    assert body["ok"] is False and body["request_id"] == 7 and body["error"]["code"] == "limit_exceeded"
    assert "replies are at most" in body["error"]["message"]


def test_escapes_do_not_take_a_cut_reply_past_the_bound():
    text = "\u0001" * 400_000  # 6 bytes each in JSON
    reply = ok_reply(None, {"plan": text})
    assert len(reply) <= MAX_REPLY_BYTES and orjson.loads(reply)["result"]["plan"].endswith("400000 characters]")
