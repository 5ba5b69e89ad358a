"""The Sparkplug host state machine on hand-built payloads (official field numbers, via our schema):
alias resolution, typed values, deaths and bdSeq, seq gaps and rebirth requests, bad input."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from arros_mqtt.config import SPARKPLUG_SCHEMA, parse_config
from arros_mqtt.decode.sparkplug.decoder import SparkplugDecoder
from arros_mqtt.decode.sparkplug.payloads import parse_payloads
from arros_mqtt.vendor import sparkplug_b_pb2 as pb

T0 = 1_764_000_000_000  # ms
G = "spBv1.0/plant"


def payload(seq: int | None, *metrics: dict, ts: int = T0) -> bytes:
    message = pb.Payload(timestamp=ts)
    if seq is not None:
        message.seq = seq
    for metric in metrics:
        properties = metric.pop("properties", None)
        added = message.metrics.add(**metric)
        for key, value in (properties or {}).items():
            added.properties.keys.append(key)
            added.properties.values.add(type=3, int_value=value)
    return message.SerializeToString()


class Host:
    """A decoder with a recording publish, fed one micro-batch at a time."""

    def __init__(self, reorder_timeout: str = "1s", topic: str = "spBv1.0/#") -> None:
        config = parse_config({"streams": {"plc": {"topic": topic, "format": "sparkplug",
                                                   "reorder_timeout": reorder_timeout}}})
        self.published: list[tuple[str, bytes, int, bool]] = []
        self.decoder = SparkplugDecoder(config.streams["plc"], lambda *args: self.published.append(args))
        self.stream = config.streams["plc"]

    def feed(self, *messages: tuple[str, bytes], at_ms: int = T0) -> tuple[list[dict], list]:
        topics = [t for t, _ in messages]
        table, bad = self.decoder.decode(topics, [p for _, p in messages], [at_ms] * len(messages))
        assert table.schema == self.stream.full_schema()
        return table.to_pylist(), bad

    def rebirths(self) -> list[str]:
        topics = []
        for topic, data, qos, retain in self.published:
            request = pb.Payload.FromString(data)
            assert [(m.name, m.datatype, m.boolean_value) for m in request.metrics] == [
                ("Node Control/Rebirth", 11, True)]
            assert (qos, retain) == (0, False)
            topics.append(topic)
        return topics


def pick(rows: list[dict], *names: str) -> list[tuple]:
    return [tuple(row[n] for n in names) for row in rows]


NBIRTH = payload(0, {"name": "bdSeq", "datatype": 8, "long_value": 5},
                 {"name": "Temp", "alias": 1, "datatype": 10, "double_value": 20.5},
                 {"name": "Count", "alias": 2, "datatype": 3, "int_value": 7})
DBIRTH = payload(1, {"name": "Speed", "alias": 10, "datatype": 9, "float_value": 1.5},
                 {"name": "Run", "alias": 11, "datatype": 11, "boolean_value": True})


def test_schema_is_the_spec_columns_then_metadata():
    host = Host(topic="spBv1.0/{group}/#")
    assert host.stream.full_schema().names == [*SPARKPLUG_SCHEMA.names, "group", "_topic", "_received_at"]
    rows, _ = host.feed((f"{G}/NBIRTH/n1", NBIRTH))
    assert {r["group"] for r in rows} == {"plant"}


def test_births_register_aliases_that_data_resolves():
    host = Host()
    rows, bad = host.feed((f"{G}/NBIRTH/n1", NBIRTH), (f"{G}/DBIRTH/n1/d1", DBIRTH),
                          (f"{G}/NDATA/n1", payload(2, {"alias": 1, "double_value": 21.0, "timestamp": T0 + 5})),
                          (f"{G}/DDATA/n1/d1", payload(3, {"alias": 11, "boolean_value": False},
                                                       {"name": "Speed", "float_value": 2.25})))
    assert not bad and not host.published
    assert pick(rows, "message_type", "device_id", "seq", "metric", "alias", "datatype") == [
        ("NBIRTH", None, 0, "bdSeq", None, "UInt64"), ("NBIRTH", None, 0, "Temp", 1, "Double"),
        ("NBIRTH", None, 0, "Count", 2, "Int32"),
        ("DBIRTH", "d1", 1, "Speed", 10, "Float"), ("DBIRTH", "d1", 1, "Run", 11, "Boolean"),
        ("NDATA", None, 2, "Temp", 1, "Double"),
        ("DDATA", "d1", 3, "Run", 11, "Boolean"), ("DDATA", "d1", 3, "Speed", 10, "Float"),
    ]
    assert pick(rows, "value_double", "value_int", "value_bool") == [
        (None, 5, None), (20.5, None, None), (None, 7, None), (1.5, None, None), (None, None, True),
        (21.0, None, None), (None, None, False), (2.25, None, None)]
    assert {(r["group_id"], r["edge_node_id"]) for r in rows} == {("plant", "n1")}
    stamp = dt.datetime.fromtimestamp((T0 + 5) / 1000, dt.UTC)
    assert rows[5]["timestamp"] == stamp, "the metric's timestamp wins over the payload's"
    assert rows[0]["timestamp"] == dt.datetime.fromtimestamp(T0 / 1000, dt.UTC)


@pytest.mark.parametrize(("datatype", "field", "wire", "column", "expected"), [
    (1, "int_value", 0xFF, "value_int", -1),  # Int8 as 8-bit two's complement
    (1, "int_value", 0xFFFFFFFE, "value_int", -2),  # ... or as 32-bit
    (2, "int_value", 0x8000, "value_int", -32768),
    (3, "int_value", 0xFFFFFFFF, "value_int", -1),
    (4, "long_value", 2**64 - 3, "value_int", -3),
    (5, "int_value", 255, "value_int", 255),
    (6, "int_value", 65535, "value_int", 65535),
    (7, "int_value", 2**32 - 1, "value_int", 2**32 - 1),
    (8, "long_value", 2**63 - 1, "value_int", 2**63 - 1),
    (9, "float_value", 0.5, "value_double", 0.5),
    (10, "double_value", -1e300, "value_double", -1e300),
    (11, "boolean_value", True, "value_bool", True),
    (12, "string_value", "héllo", "value_string", "héllo"),
    (13, "long_value", T0, "value_int", T0),  # DateTime: epoch ms
    (14, "string_value", "text", "value_string", "text"),
    (15, "string_value", "0b8e-uuid", "value_string", "0b8e-uuid"),
])
def test_typed_values_land_in_the_column_of_their_type(datatype, field, wire, column, expected):
    host = Host()
    rows, _ = host.feed((f"{G}/NBIRTH/n1", payload(0, {"name": "m", "datatype": datatype, field: wire})))
    values = {c: rows[0][c] for c in ("value_double", "value_int", "value_bool", "value_string")}
    assert values == {c: (expected if c == column else None) for c in values}
    assert rows[0]["datatype"] == SPARKPLUG_TYPE_NAMES[datatype]


SPARKPLUG_TYPE_NAMES = {1: "Int8", 2: "Int16", 3: "Int32", 4: "Int64", 5: "UInt8", 6: "UInt16", 7: "UInt32",
                        8: "UInt64", 9: "Float", 10: "Double", 11: "Boolean", 12: "String", 13: "DateTime",
                        14: "Text", 15: "UUID"}


def test_quality_property_and_null_metrics():
    host = Host()
    rows, _ = host.feed((f"{G}/NBIRTH/n1", payload(
        0, {"name": "good", "datatype": 10, "double_value": 1.0, "properties": {"Quality": 192}},
        {"name": "bad", "datatype": 10, "is_null": True, "properties": {"Quality": 0xFFFFFFFF}},
        {"name": "plain", "datatype": 10, "double_value": 2.0})))
    assert pick(rows, "metric", "quality", "is_null", "value_double") == [
        ("good", 192, False, 1.0), ("bad", -1, True, None), ("plain", None, False, 2.0)]


def test_death_with_matching_bdseq_yields_null_rows_for_every_known_metric():
    host = Host()
    host.feed((f"{G}/NBIRTH/n1", NBIRTH), (f"{G}/DBIRTH/n1/d1", DBIRTH))
    stale, _ = host.feed((f"{G}/NDEATH/n1", payload(None, {"name": "bdSeq", "datatype": 8, "long_value": 4})))
    assert stale == [] and host.decoder.stats.stale_deaths == 1
    rows, _ = host.feed((f"{G}/NDEATH/n1", payload(None, {"name": "bdSeq", "datatype": 8, "long_value": 5},
                                                   ts=T0 + 9)))
    assert pick(rows, "message_type", "device_id", "seq", "metric", "alias", "datatype", "is_null") == [
        ("NDEATH", None, None, "bdSeq", None, "UInt64", True), ("NDEATH", None, None, "Temp", 1, "Double", True),
        ("NDEATH", None, None, "Count", 2, "Int32", True), ("NDEATH", None, None, "Speed", 10, "Float", True),
        ("NDEATH", None, None, "Run", 11, "Boolean", True)]
    assert all(r["value_double"] is None and r["value_int"] is None and r["value_bool"] is None for r in rows)
    assert {r["timestamp"] for r in rows} == {dt.datetime.fromtimestamp((T0 + 9) / 1000, dt.UTC)}
    # offline now: data asks for a rebirth
    host.feed((f"{G}/NDATA/n1", payload(2, {"alias": 1, "double_value": 1.0})))
    assert host.rebirths() == ["spBv1.0/plant/NCMD/n1"]


def test_device_death_nulls_the_device_only():
    host = Host()
    host.feed((f"{G}/NBIRTH/n1", NBIRTH), (f"{G}/DBIRTH/n1/d1", DBIRTH))
    rows, _ = host.feed((f"{G}/DDEATH/n1/d1", payload(2)))
    assert pick(rows, "message_type", "device_id", "seq", "metric", "is_null") == [
        ("DDEATH", "d1", 2, "Speed", True), ("DDEATH", "d1", 2, "Run", True)]
    rows, _ = host.feed((f"{G}/DDATA/n1/d1", payload(3, {"alias": 10, "float_value": 3.0})))
    assert pick(rows, "metric", "value_double") == [("Speed", 3.0)]
    assert host.rebirths() == ["spBv1.0/plant/NCMD/n1"], "DDATA from a dead device asks for a rebirth"


def test_data_before_birth_unknown_alias_and_rebirth_throttle():
    host = Host(reorder_timeout="1s")
    rows, bad = host.feed((f"{G}/NDATA/n1", payload(5, {"alias": 3, "long_value": 9},
                                                    {"name": "Named", "datatype": 10, "double_value": 1.5})))
    assert not bad
    assert pick(rows, "metric", "alias", "datatype", "value_int", "value_double") == [
        (None, 3, "Unknown", 9, None), ("Named", None, "Double", None, 1.5)]
    host.feed((f"{G}/NDATA/n1", payload(6, {"alias": 3, "long_value": 10})), at_ms=T0 + 500)
    assert host.rebirths() == ["spBv1.0/plant/NCMD/n1"], "at most one request per reorder timeout"
    host.feed((f"{G}/NDATA/n1", payload(7, {"alias": 3, "long_value": 11})), at_ms=T0 + 1500)
    assert len(host.rebirths()) == 2
    host.feed((f"{G}/NBIRTH/n1", NBIRTH), at_ms=T0 + 1600)
    rows, _ = host.feed((f"{G}/NDATA/n1", payload(1, {"alias": 2, "int_value": 8})), at_ms=T0 + 1700)
    assert pick(rows, "metric", "value_int") == [("Count", 8)] and len(host.rebirths()) == 2


def test_seq_gap_filled_within_the_reorder_timeout_asks_nothing():
    host = Host(reorder_timeout="1s")
    host.feed((f"{G}/NBIRTH/n1", NBIRTH))
    host.feed((f"{G}/NDATA/n1", payload(2, {"alias": 1, "double_value": 2.0})), at_ms=T0 + 10)
    assert host.decoder.stats.seq_gaps == 1
    host.feed((f"{G}/NDATA/n1", payload(1, {"alias": 1, "double_value": 1.0})), at_ms=T0 + 20)
    host.decoder.tick((T0 + 5000) / 1000)
    assert host.published == []
    host.feed((f"{G}/NDATA/n1", payload(3, {"alias": 1, "double_value": 3.0})), at_ms=T0 + 30)
    host.decoder.tick((T0 + 9000) / 1000)
    assert host.published == []


def test_seq_gap_not_filled_asks_for_a_rebirth_after_the_timeout_and_seq_wraps():
    host = Host(reorder_timeout="1s")
    host.feed((f"{G}/NBIRTH/n1", payload(254, {"name": "bdSeq", "datatype": 8, "long_value": 0},
                                         {"name": "x", "alias": 1, "datatype": 10, "double_value": 0.0})))
    host.feed((f"{G}/NDATA/n1", payload(255, {"alias": 1, "double_value": 1.0})),
              (f"{G}/NDATA/n1", payload(0, {"alias": 1, "double_value": 2.0})), at_ms=T0 + 10)
    assert host.decoder.stats.seq_gaps == 0, "255 -> 0 is no gap"
    host.feed((f"{G}/NDATA/n1", payload(3, {"alias": 1, "double_value": 3.0})), at_ms=T0 + 20)
    host.decoder.tick((T0 + 900) / 1000)
    assert host.published == []
    host.decoder.tick((T0 + 1100) / 1000)
    assert host.rebirths() == ["spBv1.0/plant/NCMD/n1"]
    host.decoder.tick((T0 + 5000) / 1000)
    assert len(host.published) == 1, "one request per gap"


def test_bad_payloads_and_topics_are_dead_letters_the_rest_decodes():
    host = Host()
    good = payload(0, {"name": "x", "datatype": 10, "double_value": 1.0})
    rows, bad = host.feed(
        (f"{G}/NBIRTH/n1", good), (f"{G}/NDATA/n1", b"\x0a\xff\xff\xff"), ("spBv1.0/plant/NDATA", good),
        ("spBv1.0/plant/DDATA/n2", good), ("spBv1.0/plant/XDATA/n2", good), ("other/plant/NDATA/n2", good),
        (f"{G}/NCMD/n1", good), ("spBv1.0/STATE/scada", b'{"online": true}'), (f"{G}/NBIRTH/n2", good))
    assert pick(rows, "edge_node_id", "metric") == [("n1", "x"), ("n2", "x")]
    errors = sorted(b.error for b in bad)
    assert len(errors) == 5
    assert any("invalid Sparkplug B payload" in e for e in errors)
    assert any("unknown Sparkplug message type 'XDATA'" in e for e in errors)
    assert any("DDATA topics need a device level" in e for e in errors)
    assert sum("not a Sparkplug B topic" in e for e in errors) == 2
    assert host.decoder.stats.ignored == 2


def test_bad_payloads_are_isolated():
    good = [payload(i, {"name": "m", "datatype": 4, "long_value": i}) for i in range(50)]
    mixed = [*good[:10], b"\x12\x05abc", *good[10:40], b"\xff", *good[40:]]
    parsed, failures = parse_payloads(mixed)
    assert [i for i, _ in failures] == [10, 41]
    values = [p.metrics[0].long_value for p in parsed if p is not None]
    assert values == list(range(50))


def test_empty_batch_gives_an_empty_table():
    host = Host()
    table, bad = host.decoder.decode([], [], [])
    assert table.num_rows == 0 and table.schema == host.stream.full_schema() and bad == []
    assert isinstance(table, pa.Table)


# -- issue 20 item 10: alias scopes, refused births, bounded rebirths and host state --

def test_ndata_aliases_resolve_against_the_nbirth_only_and_ddata_against_its_dbirth():
    host = Host()
    nbirth = payload(0, {"name": "bdSeq", "datatype": 8, "long_value": 1},
                     {"name": "speed", "alias": 1, "datatype": 10, "double_value": 3.0})
    dbirth = payload(1, {"name": "valve_open", "alias": 1, "datatype": 11, "boolean_value": False})
    host.feed((f"{G}/NBIRTH/n1", nbirth), (f"{G}/DBIRTH/n1/d1", dbirth))
    rows, bad = host.feed((f"{G}/NDATA/n1", payload(2, {"alias": 1, "double_value": 4.5})),
                          (f"{G}/DDATA/n1/d1", payload(3, {"alias": 1, "boolean_value": True})))
    assert not bad and host.rebirths() == []
    assert pick(rows, "message_type", "metric", "datatype", "value_double", "value_bool") == [
        ("NDATA", "speed", "Double", 4.5, None), ("DDATA", "valve_open", "Boolean", None, True)]


@pytest.mark.parametrize("topic", [f"{G}/NBIRTH/n1", f"{G}/DBIRTH/n1/d1"])
def test_a_birth_giving_one_alias_to_two_metrics_is_a_dead_letter_and_leaves_it_unborn(topic):
    host = Host()
    host.feed((f"{G}/NBIRTH/n1", NBIRTH))
    twice = payload(1, {"name": "bdSeq", "datatype": 8, "long_value": 5},
                    {"name": "speed", "alias": 4, "datatype": 10, "double_value": 1.0},
                    {"name": "valve_open", "alias": 4, "datatype": 11, "boolean_value": True})
    rows, bad = host.feed((topic, twice))
    assert rows == [] and len(bad) == 1 and host.decoder.stats.refused_births == 1
    assert "alias 4 is given to both 'speed' and 'valve_open'" in bad[0].error
    data = (f"{G}/NDATA/n1", payload(2, {"alias": 4, "double_value": 2.0})) if "NBIRTH" in topic else \
        (f"{G}/DDATA/n1/d1", payload(2, {"alias": 4, "double_value": 2.0}))
    rows, _ = host.feed(data, at_ms=T0 + 10)
    assert pick(rows, "metric") == [(None,)], "an alias of a refused birth resolved"
    assert host.rebirths() == ["spBv1.0/plant/NCMD/n1"]


def test_rebirths_for_never_born_nodes_are_rate_limited_over_all_nodes():
    from arros_mqtt.decode.sparkplug.decoder import REBIRTH_BURST, REBIRTHS_PER_SECOND

    host = Host(reorder_timeout="1s")
    for second in range(4):  # 5,000 never-born nodes a second, each heard once a second
        host.feed(*[(f"{G}/NDATA/n{i}", payload(0, {"alias": 1, "long_value": i})) for i in range(5000)],
                  at_ms=T0 + second * 1000)
    sent = len(host.rebirths())
    assert sent <= REBIRTH_BURST + 3 * REBIRTHS_PER_SECOND + 1, sent
    assert 5000 - sent <= host.decoder.stats.rebirths_waiting <= 5000, "each node waits once, in the queue"
    assert len(set(host.rebirths())) == sent, "one node asked twice while others waited"


def test_host_state_is_bounded_never_born_nodes_go_first():
    config = parse_config({"streams": {"plc": {"topic": "spBv1.0/#", "format": "sparkplug"}}})
    decoder = SparkplugDecoder(config.streams["plc"], lambda *args: None, max_state_bytes=1_000_000)
    births = [(f"{G}/NBIRTH/b{i}", NBIRTH) for i in range(10)]
    decoder.decode([t for t, _ in births], [p for _, p in births], [T0] * len(births))
    for chunk in range(4):
        topics = [f"{G}/NDATA/u{chunk}-{i}" for i in range(5000)]
        decoder.decode(topics, [payload(0, {"alias": 1, "long_value": 1})] * len(topics), [T0 + chunk] * len(topics))
        assert decoder.stats.state_bytes <= 1_000_000
    assert decoder.stats.evicted_nodes > 0 and decoder.stats.nodes < 2000
    rows, _ = decoder.decode([f"{G}/NDATA/b3"], [payload(1, {"alias": 2, "int_value": 8})], [T0 + 9])
    assert rows.column("metric").to_pylist() == ["Count"], "a born node was forgotten before never-born ones"
