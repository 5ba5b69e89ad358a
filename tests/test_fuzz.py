"""Random and adversarial input (hypothesis): every input is decoded, dead-lettered or answered with an
error; nothing raises anything else. Decoders, topic patterns and templates, the config loader and
control requests."""

from __future__ import annotations

import string

import msgpack
import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arros_mqtt.config import parse_config
from arros_mqtt.control.protocol import ControlError, Request, decode_payload, envelope, validate
from arros_mqtt.decode import build_decoder
from arros_mqtt.errors import ConfigError
from arros_mqtt.topics import OutputTemplate, TopicPattern

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True),
                    st.text(max_size=20), st.binary(max_size=20))
JSONISH = st.recursive(SCALARS.filter(lambda v: not isinstance(v, bytes)),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=5), max_leaves=20)
FIELDS = ["ts", "temp", "rpm", "ok", "status", "pos"]
STREAM = parse_config({"streams": {"t": {
    "topic": "f/{line}/{machine}", "format": "json", "event_time": "ts",
    "schema": {"ts": "timestamp[ms]", "temp": "float64", "rpm": "int64", "ok": "bool", "status": "string",
               "pos": "struct<x: float64, y: float64>"}}}}).streams["t"]


def objects() -> st.SearchStrategy:
    """Mostly schema-shaped objects with wrong types mixed in, plus anything at all."""
    shaped = st.fixed_dictionaries({}, optional={name: JSONISH for name in FIELDS})
    return st.one_of(shaped, st.lists(shaped, max_size=3), JSONISH)


def check_decoded(fmt: str, payloads: list[bytes]) -> None:
    schema = {name: str(f.type) for name, f in zip(FIELDS, STREAM.schema, strict=True)}
    stream = STREAM if fmt == "json" else parse_config({"streams": {"t": {
        "topic": "f/{line}/{machine}", "format": fmt, "schema": schema}}}).streams["t"]
    decoder = build_decoder(stream, lambda *_: None)
    topics = [f"f/l{i}/m{i}" for i in range(len(payloads))]
    table, bad = decoder.decode(topics, payloads, [1_700_000_000_000 + i for i in range(len(payloads))])
    assert table.schema.equals(stream.full_schema())
    assert all(b.topic in topics and b.payload in payloads and b.error for b in bad)
    assert set(table.column("_topic").to_pylist()) <= set(topics)
    dead = {b.topic for b in bad}
    for topic, payload in zip(topics, payloads, strict=True):
        if topic in dead or topic in set(table.column("_topic").to_pylist()):
            continue
        alone, alone_bad = decoder.decode([topic], [payload], [0])  # neither: it holds no rows (e.g. [])
        assert alone.num_rows == 0 and not alone_bad


@FUZZ
@given(st.lists(objects().map(orjson.dumps) | st.binary(max_size=40), min_size=1, max_size=8))
def test_json_decoder(payloads):
    check_decoded("json", payloads)


@FUZZ
@given(st.lists(objects().map(lambda v: msgpack.packb(v, use_bin_type=True)) | st.binary(max_size=40),
                min_size=1, max_size=8))
def test_msgpack_decoder(payloads):
    check_decoded("msgpack", payloads)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH", "STATE", "x"]),
                          st.binary(max_size=60)), min_size=1, max_size=6))
def test_sparkplug_decoder(messages):
    stream = parse_config({"streams": {"plc": {"topic": "spBv1.0/#", "format": "sparkplug"}}}).streams["plc"]
    published = []
    decoder = build_decoder(stream, lambda *args: published.append(args))
    topics = [f"spBv1.0/g/{kind}/n1" + ("/d1" if kind.startswith("D") else "") for kind, _ in messages]
    table, bad = decoder.decode(topics, [p for _, p in messages], [0] * len(messages))
    assert table.schema.equals(stream.full_schema()) and len(bad) <= len(messages)
    decoder.tick(1e9)


TOPIC_TEXT = st.text(alphabet=string.ascii_letters + "/{}+#$ _-.\x00é", max_size=30)


@FUZZ
@given(TOPIC_TEXT, st.lists(TOPIC_TEXT, max_size=5))
def test_topic_patterns(text, topics):
    try:
        pattern = TopicPattern.parse(text)
    except ValueError:
        return
    columns = pattern.capture_columns(pa.array(topics, pa.string()))
    assert set(columns) == {name for name, _ in pattern.captures}
    assert all(len(column) == len(topics) for column in columns.values())


@FUZZ
@given(TOPIC_TEXT, st.lists(st.one_of(st.none(), st.text(max_size=10), st.integers()), min_size=1, max_size=4))
def test_output_templates(text, values):
    try:
        template = OutputTemplate.parse(text)
    except ValueError:
        return
    table = pa.table({name: pa.array([str(v) if v is not None else None for v in values], pa.string())
                      for name in template.columns})
    rendered = template.render(table) if template.columns else template.render(pa.table({"x": [0] * len(values)}))
    topics = [rendered] if isinstance(rendered, str) else rendered
    for topic in topics:
        assert "+" not in topic and "#" not in topic


CONFIG_KEYS = st.sampled_from(["broker", "engine", "archive", "control", "streams", "tables", "subscriptions",
                               "durability", "metrics", "connectors", "url", "topic", "schema", "sql", "output",
                               "sync", "wal", "format", "qos", "watermark", "t", "s", "x"])
CONFIG_VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), st.text(max_size=25),
              st.sampled_from(["5s", "batch", "none", "json", "int64", "f/{m}", "SELECT * FROM t", "mqtt://h:1"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CONFIG_KEYS, inner, max_size=4), max_leaves=25)


@FUZZ
@given(st.dictionaries(CONFIG_KEYS, CONFIG_VALUES, max_size=5))
def test_config_loader(data):
    try:
        parse_config(data, "fuzz.toml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml")


@FUZZ
@given(st.one_of(st.binary(max_size=80), st.dictionaries(
    st.sampled_from(["op", "name", "sql", "output", "format", "qos", "request_id", "reply_to", "archive", "x"]),
    st.one_of(st.sampled_from(["create", "replace", "drop", "pause", "resume", "list", "describe", "explain",
                               "SELECT 1", "a/b/#", "json"]), JSONISH), max_size=6).map(orjson.dumps)))
def test_control_requests(payload):
    try:
        data = decode_payload(payload)
        envelope(data)
        request = validate(data)
    except ControlError as exc:
        assert exc.code and str(exc)
        return
    assert isinstance(request, Request)
