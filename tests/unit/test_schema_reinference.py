"""A hostile first message must not fix an inferred schema for good: within one batch the most common kind
of value decides; across batches, when most of a young schema's first messages disagree with it, the
stream is inferred again (a bounded number of times) and its subscriptions planned afresh; the control op
`reset_schema` forgets the schema on request."""

from __future__ import annotations

import orjson
import pyarrow as pa

from arros_mqtt.config import parse_config
from arros_mqtt.decode import decoder_for
from arros_mqtt.decode.inferring_decoder import MAX_REINFERS, MIN_DISAGREEING
from arros_mqtt.ingress.batcher import RawBatch
from arros_mqtt.service.pipeline import Pipeline
from arros_mqtt.service.runtime import build_engine


def service(sql: str = "SELECT device, temp FROM s WHERE temp > 50"):
    cfg = parse_config({"streams": {"s": {"topic": "dev/{device}/data"}},
                        "subscriptions": {"hot": {"sql": sql, "output": "out/{device}"}}})
    sent: list[tuple[str, dict]] = []
    pipe = Pipeline(cfg, build_engine(cfg), lambda t, p, qos, retain: sent.append((t, orjson.loads(p))))
    return pipe, sent


def feed(pipe: Pipeline, *bodies: dict) -> None:
    payloads = [orjson.dumps(b) for b in bodies]
    pipe.process(RawBatch("s", ["dev/d1/data"] * len(payloads), payloads, [0] * len(payloads)))


def results(sent):
    return [p["temp"] for t, p in sent if t.startswith("out/")]


def deadletters(sent):
    return [p for t, p in sent if "deadletter" in t]


def test_within_one_batch_the_most_common_kind_decides_a_column_type():
    decoder = decoder_for(parse_config({"streams": {"s": {"topic": "t/{d}"}}}).streams["s"])
    payloads = [orjson.dumps(b) for b in ({"temp": "hot"}, {"temp": 20.5}, {"temp": 21}, {"temp": 60.0})]
    table, bad = decoder.decode(["t/x"] * 4, payloads, [0] * 4)
    assert decoder.stream.schema.field("temp").type == pa.float64()
    assert len(bad) == 1 and table.column("temp").to_pylist() == [20.5, 21.0, 60.0]


def test_a_hostile_first_message_is_outvoted_by_the_messages_after_it():
    pipe, sent = service()
    feed(pipe, {"temp": {"x": "hostile"}})  # alone in the first batch: temp becomes a struct
    assert pipe.engine.streams["s"].schema.field("temp").type != pa.float64()
    for i in range(MIN_DISAGREEING + 5):
        feed(pipe, {"temp": 60.0 + i})
    assert pipe.engine.streams["s"].schema.field("temp").type == pa.float64()
    assert len(deadletters(sent)) <= MIN_DISAGREEING  # dead letters only until the schema was inferred again
    assert results(sent)[-1] == 60.0 + MIN_DISAGREEING + 4  # the subscription runs on the new schema
    assert "hot" in pipe.engine.subscriptions and not pipe.engine.rejected
    feed(pipe, {"temp": 99.5})
    assert results(sent)[-1] == 99.5


def test_a_first_message_with_other_fields_is_widened_by_the_fields_later_messages_carry():
    pipe, sent = service()
    feed(pipe, {"junk": 1})  # the subscription's `temp` is not in this schema: rejected
    assert "hot" in pipe.engine.rejected
    for i in range(MIN_DISAGREEING + 1):
        feed(pipe, {"temp": 70.0 + i})
    assert sorted(pipe.engine.streams["s"].schema.names) == ["junk", "temp"]
    assert "hot" in pipe.engine.subscriptions
    feed(pipe, {"temp": 88.0})
    assert results(sent)[-1] == 88.0


def test_agreeing_messages_keep_the_schema_and_flipping_is_bounded():
    pipe, _ = service()
    feed(pipe, *[{"temp": 60.0}] * 20)
    feed(pipe, {"temp": "x"})  # one odd message among agreeing ones changes nothing
    assert pipe.engine.streams["s"].schema.field("temp").type == pa.float64()
    decoder = pipe.decoders["s"]
    for _ in range(4 * MAX_REINFERS):  # a sender alternating kinds cannot make it flip forever
        for _ in range(MIN_DISAGREEING * 3):
            feed(pipe, {"temp": {"a": 1}})
        for _ in range(MIN_DISAGREEING * 3):
            feed(pipe, {"temp": 1.5})
    assert decoder.reinfers <= MAX_REINFERS


def test_reset_schema_forgets_it_and_the_next_batch_infers_it_again():
    pipe, sent = service()
    feed(pipe, *[{"temp": True}] * 30)  # a whole first wave of odd messages: a consistent bool schema
    assert pipe.engine.streams["s"].schema.field("temp").type == pa.bool_()
    assert pipe.reset_schema("s")
    assert "hot" in pipe.engine.pending and pipe.engine.streams["s"].schema is None
    feed(pipe, {"temp": 61.5})
    assert pipe.engine.streams["s"].schema.field("temp").type == pa.float64()
    assert results(sent) == [61.5]
    assert not pipe.reset_schema("nope")


def test_adopting_a_logged_schema_follows_a_reinference_on_replay():
    pipe, _ = service()
    decoder = pipe.decoders["s"]
    old = pa.schema([pa.field("temp", pa.bool_())])
    new = pa.schema([pa.field("temp", pa.float64())])
    decoder.adopt(old)
    decoder.adopt(old)  # the same schema again: nothing replanned
    assert pipe.engine.streams["s"].schema.equals(old) and "hot" in pipe.engine.rejected
    decoder.adopt(new)  # a record written after the live run inferred again
    assert pipe.engine.streams["s"].schema.equals(new) and "hot" in pipe.engine.subscriptions
