"""Event-time bounds: one row stamped in the year 2100 (or at 0) must not stop every window of its stream:
rows out of `max_future` / `max_past` / the epoch are dead-lettered with the reason and never move the
watermark; a checkpointed watermark already poisoned is clamped on restore."""

from __future__ import annotations

import orjson
import pytest

from arros_mqtt.config import ConfigError, parse_config
from arros_mqtt.engine.watermark import Watermark
from arros_mqtt.ingress.batcher import RawBatch
from arros_mqtt.service.pipeline import Pipeline
from arros_mqtt.service.runtime import build_engine

NOW = 1_764_000_000_000  # arrival of every message (epoch ms)
YEAR_2100 = 4_102_444_800_000
SQL = "SELECT tumble(ts, INTERVAL '1 second') AS window, device, count(*) AS n FROM s GROUP BY window, device"


def pipeline(**stream_options):
    cfg = parse_config({
        "streams": {"s": {"topic": "dev/{device}/data", "event_time": "ts", "schema": {"ts": "timestamp[ms]"},
                          **stream_options}},
        "subscriptions": {"w": {"sql": SQL, "output": "out/{device}"}},
    })
    sent: list[tuple[str, dict]] = []
    pipe = Pipeline(cfg, build_engine(cfg), lambda topic, payload, qos, retain: sent.append((topic,
                                                                                              orjson.loads(payload))))
    return pipe, sent


def feed(pipe: Pipeline, device: str, stamps: list[int], arrival: int = NOW) -> None:
    payloads = [orjson.dumps({"ts": ts}) for ts in stamps]
    pipe.process(RawBatch("s", [f"dev/{device}/data"] * len(stamps), payloads, [arrival] * len(stamps)))


def windows(sent):
    return [(p["device"], p["n"]) for t, p in sent if t.startswith("out/")]


def letters(sent):
    return [p for t, p in sent if t == "arros/deadletter/s"]


def test_a_row_from_the_year_2100_is_dead_lettered_and_windows_go_on():
    pipe, sent = pipeline()
    feed(pipe, "a", [NOW - 3000, NOW - 2900])
    feed(pipe, "evil", [YEAR_2100])
    feed(pipe, "b", [NOW - 1500, NOW - 500])  # closes a's window; b's first one closes too
    feed(pipe, "a", [NOW + 1000])
    assert windows(sent) == [("a", 2), ("b", 1), ("b", 1)]
    [letter] = letters(sent)
    assert "max_future" in letter["error"] and letter["subscription"] is None
    assert letter["rows"][0]["device"] == "evil"
    assert pipe.stats["s"].deadletters == 1
    assert pipe.engine.watermarks["s"].value == NOW + 1000


def test_a_row_within_max_future_counts_and_one_past_it_does_not():
    pipe, sent = pipeline(max_future="10s")
    feed(pipe, "a", [NOW + 10_000, NOW + 10_001])
    assert [r["ts"] for letter in letters(sent) for r in letter["rows"]] == ["2025-11-24T16:00:10.001000+00:00"]
    assert pipe.engine.watermarks["s"].value == NOW + 10_000


@pytest.mark.parametrize("stamp", [0, -5000])
def test_an_event_time_at_or_before_the_epoch_is_dead_lettered_not_silently_late(stamp):
    pipe, sent = pipeline()
    feed(pipe, "a", [NOW, stamp])
    [letter] = letters(sent)
    assert "1970" in letter["error"] and letter["rows_total"] == 1
    assert pipe.engine.subscriptions["w"].stats.late_rows == 0


def test_max_past_is_off_by_default_and_bounds_old_rows_when_set():
    pipe, sent = pipeline()
    feed(pipe, "a", [NOW - 86_400_000])  # a day old: a device's backlog
    assert letters(sent) == []
    pipe, sent = pipeline(max_past="1h")
    feed(pipe, "a", [NOW - 86_400_000, NOW])
    [letter] = letters(sent)
    assert "max_past" in letter["error"] and letter["rows_total"] == 1


def test_max_future_zero_turns_the_bound_off():
    pipe, sent = pipeline(max_future="0s")
    feed(pipe, "a", [YEAR_2100])
    assert letters(sent) == [] and pipe.engine.watermarks["s"].value == YEAR_2100


def test_rows_that_reach_the_engine_unchecked_cannot_poison_the_watermark():
    pipe, _ = pipeline()
    engine = pipe.engine
    decoded, _ = pipe.decode(RawBatch("s", ["dev/x/data"], [orjson.dumps({"ts": YEAR_2100})], [NOW]))
    engine.process("s", decoded)  # not admitted first
    assert engine.watermarks["s"].value == NOW + 60_000


def test_a_poisoned_checkpointed_watermark_is_clamped_on_restore():
    mark = Watermark(0, 30.0, max_future_ms=60_000)
    mark.restore({"value": YEAR_2100, "max_event_ms": YEAR_2100}, NOW / 1000)
    assert mark.value == NOW + 60_000 and mark.max_event_ms == NOW + 60_000
    pipe, sent = pipeline()
    pipe.engine.watermarks["s"].restore({"value": YEAR_2100, "max_event_ms": YEAR_2100}, NOW / 1000)
    feed(pipe, "a", [NOW + 61_000, NOW + 61_500], arrival=NOW + 61_000)
    feed(pipe, "a", [NOW + 63_000], arrival=NOW + 63_000)
    assert windows(sent) == [("a", 2)]  # windows close again after the clamp


def test_bounds_are_stream_keys_with_durations():
    streams = parse_config({"streams": {"s": {"topic": "t", "max_future": "5m", "max_past": "7d"}}}).streams
    assert (streams["s"].max_future, streams["s"].max_past) == (300.0, 7 * 86400.0)
    assert parse_config({"streams": {"s": {"topic": "t"}}}).streams["s"].max_future == 60.0
    with pytest.raises(ConfigError, match="max_future"):
        parse_config({"streams": {"s": {"topic": "t", "max_future": "soon"}}})


def test_a_replayed_idle_advance_from_a_poisoned_watermark_is_clamped_too():
    import time

    mark = Watermark(0, 30.0, max_future_ms=60_000)
    before = time.time()
    assert mark.advance_to(YEAR_2100)
    assert mark.value <= round(time.time() * 1000) + 60_000 and mark.value >= round(before * 1000) + 60_000
