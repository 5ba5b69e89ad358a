"""Random and adversarial input (hypothesis) for topic patterns and templates, the config loader and control
requests: every input is accepted or answered with its own error; nothing raises anything else. (The
decoders are fuzzed in test_decode_fuzz.py; `ARROS_FUZZ_EXAMPLES` sets the examples per property here too.)"""

from __future__ import annotations

import os
import string

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arros_mqtt.config import parse_config
from arros_mqtt.control.protocol import ControlError, Request, decode_payload, envelope, validate
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.core.topics import OutputTemplate, TopicPattern

FUZZ = settings(max_examples=int(os.environ.get("ARROS_FUZZ_EXAMPLES", "150")), deadline=None,
               suppress_health_check=[HealthCheck.too_slow])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True),
                    st.text(max_size=20), st.binary(max_size=20))
JSONISH = st.recursive(SCALARS.filter(lambda v: not isinstance(v, bytes)),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=5), max_leaves=20)
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
