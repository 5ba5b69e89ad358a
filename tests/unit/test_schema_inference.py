"""Streams without a declared schema: inferred from the first micro-batch, then fixed; fields it lacks
counted; subscriptions over such streams planned once the schema is known."""

from __future__ import annotations

import dataclasses
import datetime as dt

import msgpack
import orjson
import pyarrow as pa
import pytest

from arros_mqtt.config import parse_config
from arros_mqtt.core.errors import SqlError
from arros_mqtt.decode import decoder_for
from arros_mqtt.ingress.batcher import RawBatch
from arros_mqtt.service.pipeline import Pipeline
from arros_mqtt.service.runtime import build_engine

ENCODE = {"json": orjson.dumps, "msgpack": msgpack.packb}


def stream(fmt: str = "json", **options):
    return parse_config({"streams": {"s": {"topic": "dev/{device}/data", "format": fmt, **options}}}).streams["s"]


def feed(decoder, payloads: list[bytes]):
    n = len(payloads)
    return decoder.decode(["dev/d1/data"] * n, payloads, [1_700_000_000_000] * n)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_json_and_msgpack_rules(fmt):
    inferred = []
    decoder = decoder_for(stream(fmt), inferred.append)
    first = [{"temp": 20, "ok": True, "ts": "2024-05-01T10:00:00Z", "note": None, "pos": {"x": 1, "y": 2.5},
              "tags": ["a"], "_topic": "spoof", "device": "spoof"},
             {"temp": 21, "status": "run"}]
    table, bad = feed(decoder, [ENCODE[fmt](row) for row in first])
    assert not bad and len(inferred) == 1
    assert inferred[0].schema == pa.schema([
        ("temp", pa.float64()), ("ok", pa.bool_()), ("ts", pa.timestamp("us", tz="UTC")), ("note", pa.string()),
        ("pos", pa.struct([("x", pa.float64()), ("y", pa.float64())])), ("tags", pa.list_(pa.string())),
        ("status", pa.string())])
    assert table.column("device").to_pylist() == ["d1", "d1"] and table.column("_topic")[0].as_py() == "dev/d1/data"
    assert decoder.extra_fields == {"_topic": 1, "device": 1}  # named like columns Arros adds: left out

    later = [{"temp": 20.5, "ts": "2024-05-01T10:00:01.5Z", "note": "text", "new_field": 1},
             {"temp": 1, "new_field": 2, "other": "x"}, {"temp": "hot"}]
    table, bad = feed(decoder, [ENCODE[fmt](row) for row in later])
    assert table.column("temp").to_pylist() == [20.5, 1.0]
    assert table.column("ts")[0].as_py() == dt.datetime(2024, 5, 1, 10, 0, 1, 500000, tzinfo=dt.UTC)
    assert len(bad) == 1 and "'temp'" in bad[0].error
    assert decoder.extra_fields == {"_topic": 1, "device": 1, "new_field": 2, "other": 1}
    assert len(inferred) == 1 and table.schema == inferred[0].full_schema()


def test_a_first_batch_with_nothing_readable_waits_for_the_next():
    inferred = []
    decoder = decoder_for(stream(), inferred.append)
    table, bad = feed(decoder, [b"not json", b"[1, 2]", b"{}"])
    assert table.num_rows == 0 and len(bad) == 3 and "no schema could be inferred" in bad[0].error
    assert not inferred
    table, bad = feed(decoder, [b"garbage", b'{"v": 1}'])
    assert table.column("v").to_pylist() == [1.0] and len(bad) == 1 and "invalid JSON" in bad[0].error
    assert inferred[0].schema.names == ["v"]


def test_csv_with_header():
    decoder = decoder_for(stream("csv", header=True))
    table, bad = feed(decoder, [b"ts,temp,ok,label\n2024-05-01T10:00:00Z,20,true,a\n2024-05-01T10:00:01Z,,false,",
                                b"temp,label,extra\n1.5,b,x"])
    assert not bad
    assert decoder.stream.schema == pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("temp", pa.float64()),
                                               ("ok", pa.bool_()), ("label", pa.string()), ("extra", pa.string())])
    table, bad = feed(decoder, [b"temp,more\n2,y\n3,z"])
    assert table.column("temp").to_pylist() == [2.0, 3.0] and decoder.extra_fields == {"more": 2}


def test_influx_keeps_the_types_the_line_protocol_states():
    decoder = decoder_for(stream("influx", precision="s"))
    table, bad = feed(decoder, [b"cpu,host=a usage=1,count=2i,big=3u,up=t,msg=\"x\" 1700000000",
                                b"cpu,host=b,zone=z usage=2i,count=3i 1700000001"])
    assert not bad
    assert decoder.stream.schema == pa.schema([
        ("_measurement", pa.string()), ("_time", pa.timestamp("s", tz="UTC")), ("host", pa.string()),
        ("zone", pa.string()), ("usage", pa.float64()), ("count", pa.int64()), ("big", pa.uint64()),
        ("up", pa.bool_()), ("msg", pa.string())])
    table, bad = feed(decoder, [b"cpu,host=c,rack=r1 usage=3,count=4i,temp=20"])
    assert table.column("usage").to_pylist() == [3.0] and decoder.extra_fields == {"rack": 1, "temp": 1}
    table, bad = feed(decoder, [b"cpu count=4.5"])
    assert len(bad) == 1 and "'count'" in bad[0].error


def test_arrow_keeps_the_producers_types():
    sink = pa.BufferOutputStream()
    table = pa.table({"v": pa.array([1], pa.int16()), "t": pa.array([0], pa.timestamp("ns"))})
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    decoder = decoder_for(stream("arrow"))
    feed(decoder, [sink.getvalue().to_pybytes()])
    assert decoder.stream.schema == table.schema


def config(sql: str, **stream_options) -> dict:
    return {
        "streams": {"s": {"topic": "dev/{device}/data", **stream_options},
                    "declared": {"topic": "decl/{device}", "schema": {"v": "float64"}}},
        "subscriptions": {"hot": {"sql": sql, "output": "out/{device}"}},
    }


def test_engine_plans_pending_subscriptions_once_the_schema_is_known():
    engine = build_engine(parse_config(config("SELECT device, temp FROM s WHERE temp > 50")))
    assert list(engine.pending) == ["hot"] and not engine.subscriptions
    other = dataclasses.replace(engine.pending["hot"], name="other")
    with pytest.raises(SqlError) as info:
        engine.add(other)
    assert info.value.code == "schema_pending" and "inferred" in str(info.value)
    decoder = decoder_for(engine.streams["s"], lambda s: engine.set_stream_schema("s", s))
    table, _ = feed(decoder, [b'{"temp": 60}', b'{"temp": 40}'])
    assert list(engine.subscriptions) == ["hot"] and not engine.pending
    [result] = engine.process("s", table)
    assert result.table.to_pylist() == [{"device": "d1", "temp": 60.0}]


def test_sql_that_fails_on_the_inferred_schema_is_rejected_with_the_reason():
    engine = build_engine(parse_config(config("SELECT device, tmp FROM s")))
    failures = engine.set_stream_schema("s", dataclasses.replace(engine.streams["s"],
                                                                 schema=pa.schema([("temp", pa.float64())])))
    assert "tmp" in str(failures["hot"]) and "hot" in engine.rejected and not engine.subscriptions


def test_a_subscription_that_only_names_a_schemaless_stream_is_planned_at_once():
    engine = build_engine(parse_config(config("SELECT s.v, s.device FROM declared s")))  # `s` is an alias here
    assert list(engine.subscriptions) == ["hot"] and not engine.pending


def test_forbidden_sql_over_a_schemaless_stream_is_still_refused_at_check():
    with pytest.raises(Exception, match="not allowed"):
        build_engine(parse_config(config("COPY (SELECT * FROM s) TO '/tmp/x.csv'")))


def test_pipeline_plans_on_the_first_batch_and_reports_extra_fields():
    sent: list[tuple[str, bytes]] = []
    cfg = parse_config(config("SELECT device, temp FROM s WHERE temp > 50"))
    pipeline = Pipeline(cfg, build_engine(cfg), lambda topic, payload, qos, retain: sent.append((topic, payload)))
    pipeline.process(RawBatch("s", ["dev/d1/data"] * 2, [b'{"temp": 60}', b'{"temp": 10}'], [0, 0]))
    pipeline.process(RawBatch("s", ["dev/d2/data"] * 2, [b'{"temp": 70, "x": 1}', b'{"temp": "hot"}'], [0, 0]))
    assert [(t, orjson.loads(p)) for t, p in sent if t.startswith("out/")] == [
        ("out/d1", {"device": "d1", "temp": 60.0}), ("out/d2", {"device": "d2", "temp": 70.0})]
    assert [t for t, _ in sent if "deadletter" in t] == ["arros/deadletter/s"]
    assert pipeline.stats["s"].extra_fields == {"x": 1} and pipeline.stats["s"].deadletters == 1
