"""Every decoder fuzzed with hypothesis: random bytes and adversarial payloads of each format.

Properties, for declared and inferred schemas alike (sparkplug: its stateful host, fed several
micro-batches, never raises and always yields its fixed columns):
- decoding never raises: each payload either yields rows or is a dead letter (with a reason), never both;
- the rows carry exactly the stream's schema;
- `read_one` (the path that explains a bad payload) raises nothing but DecodeError;
- a micro-batch decodes to the same rows as its payloads decoded one by one (fast path == slow path).

Bounded for the suite (`ARROS_FUZZ_EXAMPLES`, default 40 per property); run longer with e.g.
`ARROS_FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/unit/test_decode_fuzz.py`.
"""

from __future__ import annotations

import os

import msgpack
import orjson
import pyarrow as pa
import pyarrow.compute
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arros_mqtt.config import parse_config
from arros_mqtt.core.errors import DecodeError
from arros_mqtt.decode import CODECS, InferringStreamDecoder, StreamDecoder, build_decoder, decoder_for, json_codec

EXAMPLES = int(os.environ.get("ARROS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCHEMA = {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string"}
KEYS = [*SCHEMA, "_topic", "dev", "x", "", "ok\\", "t e,m=p"]
STREAMS = {
    "json": {"format": "json"}, "msgpack": {"format": "msgpack"}, "csv": {"format": "csv"},
    "csv_header": {"format": "csv", "header": True}, "influx": {"format": "influx"},
    "influx_cpu": {"format": "influx", "measurement": "cpu"}, "arrow": {"format": "arrow"},
}

# ---- payload strategies: plausible values of each format, then broken in the ways networks break them

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["2024-05-01T10:00:00Z", "12", "true", "1.5", ""]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(KEYS), inner, max_size=3), max_leaves=8)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
documents = st.one_of(objects, st.lists(objects, max_size=4), values)


def _dump_json(value) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return b"{"


def _dump_msgpack(value) -> bytes:
    try:
        return msgpack.packb(value)
    except (OverflowError, TypeError, ValueError):
        return b"\xc1"


csv_fields = st.one_of(st.sampled_from(["", "1", "-2.5", "true", "2024-05-01T10:00:00Z", "1714557600000", '"a,b"',
                                        '"q""q"', '"multi\nline"', '"open', "x\r"]), st.text(max_size=6))
csv_lines = st.lists(csv_fields, min_size=1, max_size=7).map(",".join)
csv_payloads = st.lists(csv_lines, min_size=1, max_size=4).map(lambda lines: "\n".join(lines).encode())
csv_headers = st.lists(st.sampled_from([*SCHEMA, "extra", "", '"temp"', "x y"]), min_size=1, max_size=6).map(
    ",".join)
csv_header_payloads = st.tuples(csv_headers, csv_payloads).map(lambda hp: hp[0].encode() + b"\n" + hp[1])

names = st.one_of(st.sampled_from(["cpu", "mem", "temp", "host", "my\\ m", "a\\,b", "k\\=v", "\\\\", "_time",
                                   "_measurement", "#c", "q\"t"]), st.text(alphabet="ab ,=\\\"é\t", max_size=5))
field_values = st.one_of(st.sampled_from(["1", "-1.5e3", "12i", "-3i", "7u", "-7u", "t", "FALSE", '"s"', '"a \\" b"',
                                          '"unterminated', "abc", "1.5i", "99999999999999999999i", "", '"x"y',
                                          "\u0115", "\u0115i"]),  # U+0115 ends in the string marker's last byte
                         st.floats(allow_nan=False).map(repr), st.text(max_size=5))
influx_lines = st.builds(
    lambda m, tags, fields, ts: m + "".join(f",{k}={v}" for k, v in tags) + " "
    + ",".join(f"{k}={v}" for k, v in fields) + ts,
    names, st.lists(st.tuples(names, names), max_size=3), st.lists(st.tuples(names, field_values), max_size=4),
    st.sampled_from(["", " 1700000000000000000", " -5", " 1.5", " x", "  ", " 1 2"]))
influx_payloads = st.lists(st.one_of(influx_lines, st.sampled_from(["", "# comment", "\r"])), min_size=1,
                           max_size=4).map(lambda lines: "\n".join(lines).encode())

arrow_types = st.sampled_from([pa.int8(), pa.int64(), pa.uint64(), pa.float64(), pa.string(), pa.bool_(),
                               pa.timestamp("ns"), pa.timestamp("ms", tz="UTC"), pa.null(), pa.binary(),
                               pa.list_(pa.int64()), pa.dictionary(pa.int8(), pa.string())])


@st.composite
def arrow_payloads(draw) -> bytes:
    columns = draw(st.lists(st.tuples(st.sampled_from(KEYS), arrow_types), max_size=4, unique_by=lambda c: c[0]))
    rows = draw(st.integers(0, 4))
    arrays, fields = [], []
    for name, kind in columns:
        base = kind.value_type if pa.types.is_dictionary(kind) else kind
        sample = draw(st.lists(st.sampled_from(_samples(base)), min_size=rows, max_size=rows))
        array = pa.array(sample, base)
        arrays.append(array.dictionary_encode() if pa.types.is_dictionary(kind) else array)
        fields.append(pa.field(name, arrays[-1].type))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields)) if fields else pa.table({"x": [None] * rows})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _samples(kind: pa.DataType) -> list:
    if pa.types.is_integer(kind):
        return [None, 0, 1, 127] if kind.bit_width == 8 else [None, 0, -1, 2**62] if kind == pa.int64() else [0, 2**63]
    return {pa.float64(): [None, 1.5, float("nan")], pa.string(): [None, "a", "12", "2024-05-01T10:00:00Z"],
            pa.bool_(): [None, True], pa.binary(): [None, b"\xff"], pa.list_(pa.int64()): [None, [1, 2], []],
            }.get(kind, [None])


def broken(payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Truncated, with bytes flipped or inserted: what a lossy link or a buggy device sends."""
    return st.one_of(
        payloads,
        st.tuples(payloads, st.integers(0, 400)).map(lambda p: p[0][:p[1]]),
        st.tuples(payloads, st.integers(0, 400), st.integers(0, 255)).map(
            lambda p: p[0][:p[1]] + bytes([p[2]]) + p[0][p[1] + 1:]),
        st.tuples(payloads, st.integers(0, 400), st.binary(min_size=1, max_size=3)).map(
            lambda p: p[0][:p[1]] + p[2] + p[0][p[1]:]),
        st.binary(max_size=64),
    )


PAYLOADS = {
    "json": broken(documents.map(_dump_json)), "msgpack": broken(documents.map(_dump_msgpack)),
    "csv": broken(csv_payloads), "csv_header": broken(csv_header_payloads),
    "influx": broken(influx_payloads), "influx_cpu": broken(influx_payloads), "arrow": broken(arrow_payloads()),
}


def stream(kind: str, declared: bool):
    spec = {"topic": "fz/{dev}", **STREAMS[kind]}
    if declared:
        spec["schema"] = SCHEMA
    return parse_config({"streams": {"s": spec}}).streams["s"]


def check_decoding(decoder, payloads: list[bytes], may_filter: bool) -> None:
    n = len(payloads)
    base = 1_700_000_000_000
    table, bad = decoder.decode([f"fz/d{i}" for i in range(n)], payloads, [base + i for i in range(n)])
    assert table.schema == decoder.schema
    table.validate(full=True)
    assert all(letter.error for letter in bad)
    failed = [letter.received_ms - base for letter in bad]
    decoded = set(pa.compute.cast(table.column("_received_at"), pa.int64()).to_pylist())
    assert len(failed) == len(set(failed)) and not decoded & {base + i for i in failed}, "rows and a dead letter"
    if not may_filter:  # every payload is accounted for: rows or a dead letter
        assert len(decoded) + len(failed) == n


# csv without a header cannot infer a schema (a config error), so it is fuzzed with its schema only.
@pytest.mark.parametrize(("kind", "declared"), [
    pytest.param(kind, declared, id=f"{kind}-{'declared' if declared else 'inferred'}")
    for kind in STREAMS for declared in (True, False) if kind != "csv" or declared
])
def test_decoding_never_raises_and_accounts_for_every_payload(kind, declared):

    @FUZZ
    @given(st.lists(PAYLOADS[kind], min_size=1, max_size=6))
    def run(payloads):
        decoder = decoder_for(stream(kind, declared))
        check_decoding(decoder, payloads, may_filter=kind == "influx_cpu")
        check_decoding(decoder, payloads[::-1], may_filter=kind == "influx_cpu")  # now with a fixed schema

    run()


@pytest.mark.parametrize("kind", [*STREAMS, "json-reader"])
def test_read_one_raises_only_decode_errors_and_batches_match_single_reads(kind, monkeypatch):
    if kind == "json-reader":  # JSON batches through pyarrow's reader, not the small-batch path
        monkeypatch.setattr(json_codec, "SMALL_BATCH_ROWS", 0)
        kind = "json"
    config = stream(kind, declared=True)

    @FUZZ
    @given(st.lists(PAYLOADS[kind], min_size=1, max_size=6))
    def run(payloads):
        codec = CODECS[config.format].for_stream(config)
        singles = []
        for payload in payloads:
            try:
                singles.append(codec.read_one(payload))
            except DecodeError:
                singles.append(None)
        decoded = codec.decode(payloads)
        failed = {f.index for f in decoded.failures}
        assert failed == {i for i, t in enumerate(singles) if t is None or (t.num_rows == 0 and codec.empty_is_error)}
        expected = [t for t in singles if t is not None and t.num_rows]
        if expected:
            assert comparable(decoded.table) == comparable(pa.concat_tables(expected)), "batch and single reads differ"

    run()


@st.composite
def sparkplug_messages(draw) -> tuple[str, bytes]:
    """Topics of every message type (and some that are not Sparkplug), payloads built with the schema's
    protobuf (metrics with names, aliases, datatypes and values that may disagree), or broken bytes."""
    from arros_mqtt.vendor import sparkplug_b_pb2 as pb

    kind = draw(st.sampled_from(["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "STATE", "NCMD"]))
    device = "/d1" if kind.startswith("D") else ""
    topic = draw(st.sampled_from([f"spBv1.0/g1/{kind}/n1{device}", f"spBv1.0/g1/{kind}", "spBv1.0/g1", "other/x"]))
    message = pb.Payload(timestamp=draw(st.integers(0, 2**64 - 1)))
    if draw(st.booleans()):
        message.seq = draw(st.integers(0, 300))
    for _ in range(draw(st.integers(0, 4))):
        metric = message.metrics.add(datatype=draw(st.integers(0, 40)))
        if draw(st.booleans()):
            metric.name = draw(st.sampled_from(["temp", "bdSeq", "Node Control/Rebirth", "", "a/b"]))
        if draw(st.booleans()):
            metric.alias = draw(st.integers(0, 2**64 - 1))
        value = draw(st.sampled_from(["int", "long", "float", "double", "boolean", "string", "null"]))
        if value == "null":
            metric.is_null = True
        elif value == "string":
            metric.string_value = draw(st.text(max_size=5))
        elif value == "boolean":
            metric.boolean_value = draw(st.booleans())
        elif value in ("float", "double"):
            setattr(metric, f"{value}_value", draw(st.floats(allow_nan=True, width=32)))
        else:
            setattr(metric, f"{value}_value", draw(st.integers(0, 2**32 - 1 if value == "int" else 2**64 - 1)))
    return topic, draw(broken(st.just(message.SerializeToString())))


def test_sparkplug_decoding_never_raises():
    stream = parse_config({"streams": {"plc": {"topic": "spBv1.0/#", "format": "sparkplug"}}}).streams["plc"]

    @FUZZ
    @given(st.lists(st.lists(sparkplug_messages(), min_size=1, max_size=5), min_size=1, max_size=4))
    def run(batches):
        published = []
        decoder = build_decoder(stream, lambda *args: published.append(args))
        for i, batch in enumerate(batches):  # several micro-batches: births, then data against them
            topics, payloads = [t for t, _ in batch], [p for _, p in batch]
            table, bad = decoder.decode(topics, payloads, [1_700_000_000_000 + i] * len(batch))
            assert table.schema == stream.full_schema() and all(letter.error for letter in bad)
            table.validate(full=True)
            decoder.tick(1_700_000_100.0 + i)

    run()


def comparable(table: pa.Table) -> str:
    """Rows as text: NaN is never equal to itself in Arrow but prints the same; timestamps as integers
    (a fuzzed one may lie outside Python's datetime range)."""
    columns = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    return repr(pa.Table.from_arrays(columns, names=table.column_names).to_pylist())


def test_strategies_reach_the_decoders():
    """The generated payloads are not all rejected early: each format decodes some rows."""
    for kind in STREAMS:
        config = stream(kind, declared=True)
        decoder = StreamDecoder(config, CODECS[config.format].for_stream(config))
        good = {"json": b'{"temp": 1}', "msgpack": msgpack.packb({"temp": 1}), "csv": b"1,2,3,true,x",
                "csv_header": b"temp\n1", "influx": b"cpu temp=1", "influx_cpu": b"cpu temp=1",
                "arrow": _ipc_of(pa.table({"temp": [1.0]}))}[kind]
        table, bad = decoder.decode(["fz/d"], [good], [0])
        assert table.num_rows == 1 and not bad, kind
    assert isinstance(decoder_for(stream("json", declared=False)), InferringStreamDecoder)


def _ipc_of(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
