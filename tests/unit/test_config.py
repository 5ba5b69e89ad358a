"""Config loading: every error names the file, the key and what is wrong."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from arros_mqtt.config import Config, load_config, parse_config
from arros_mqtt.core.errors import ConfigError

GOOD = """
[broker]
url = "mqtt://user:secret@127.0.0.1:1884"
client_id = "arros-edge-1"
protocol = "3.1.1"
session_expiry = "2h"

[engine]
batch_max_rows = 5000
batch_max_delay = "50ms"

[streams.telemetry]
topic = "factory/{line}/{machine}/telemetry"
format = "msgpack"
schema = { ts = "timestamp[ms]", temp = "float64", rpm = "int64", ok = "bool", status = "string" }
event_time = "ts"
watermark = "5s"
qos = 0

[subscriptions.hot]
sql = "SELECT line, machine, ts, temp FROM telemetry WHERE temp > 90"
output = "alerts/{line}/{machine}"
format = "msgpack"
retain = true
batch = true
timestamps = "epoch_ms"
"""


def write(tmp_path, text: str):
    path = tmp_path / "arros.toml"
    path.write_text(text)
    return path


def test_good_config(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.broker.host == "127.0.0.1" and config.broker.port == 1884
    assert config.broker.username == "user" and config.broker.password == "secret"
    assert config.broker.protocol == "3.1.1" and config.broker.session_expiry == 7200
    assert config.engine.batch_max_rows == 5000 and config.engine.batch_max_delay == pytest.approx(0.05)
    stream = config.streams["telemetry"]
    assert stream.topic.filter == "factory/+/+/telemetry"
    assert stream.format == "msgpack" and stream.qos == 0 and stream.watermark == 5
    assert stream.full_schema().names == ["ts", "temp", "rpm", "ok", "status", "line", "machine", "_topic",
                                          "_received_at"]
    assert stream.full_schema().field("_received_at").type == pa.timestamp("ms", tz="UTC")
    sub = config.subscriptions["hot"]
    assert sub.output.columns == ["line", "machine"] and sub.retain and sub.batch and sub.timestamps == "epoch_ms"


def test_defaults_without_file():
    config = Config()
    assert config.broker is None and config.control.prefix == "arros" and config.engine.batch_max_rows == 10000
    assert config.engine.batching == "adaptive" and config.engine.batch_max_bytes == 1024 * 1024
    assert config.engine.batch_linger == 0.002


def test_broker_url_override_keeps_other_settings(tmp_path):
    config = load_config(write(tmp_path, GOOD)).with_broker_url("mqtt://10.0.0.5:1999")
    assert config.broker.port == 1999 and config.broker.client_id == "arros-edge-1"


@pytest.mark.parametrize(("text", "key", "words"), [
    ("[streams.t\ntopic = 1", "", "invalid TOML"),
    ('[streams.t]\ntopic = "a/b"\nformat = "xml"\nschema = {a = "int64"}', "streams.t.format", "unknown value 'xml'"),
    ('[engine]\nbatch_max_delay = "5 parsecs"', "engine.batch_max_delay", "invalid duration"),
    ('[engine]\nbatch_max_delay = 5', "engine.batch_max_delay", "duration"),
    ('[engine]\nbatch_max_rows = "many"', "engine.batch_max_rows", "expected an integer"),
    ('[engine]\nbatch_max_rows = 0', "engine.batch_max_rows", "at least 1"),
    ('[engine]\nbach_max_rows = 10', "engine.bach_max_rows", "unknown key"),
    ('[engine]\nbatching = "eager"', "engine.batching", "expected \"adaptive\" or \"delay\""),
    ('[engine]\nbatch_max_bytes = "lots"', "engine.batch_max_bytes", "invalid size"),
    ('[engine]\nbatch_max_bytes = 0', "engine.batch_max_bytes", "at least 1 byte"),
    ('[engine]\nbatch_linger = "soon"', "engine.batch_linger", "invalid duration"),
    ('[streams.t]\ntopic = "a/b"\nschema = {a = "flaot64"}', "streams.t.schema.a", "unknown Arrow type"),
    ('[streams.t]\ntopic = "a/#/b"\nschema = {a = "int64"}', "streams.t.topic", "'#' must be the last level"),
    ('[streams.t]\ntopic = "a/{m}"\nschema = {m = "int64"}', "streams.t.topic", "same name as a schema column"),
    ('[streams.t]\ntopic = "a/b"\nformat = "csv"', "streams.t.schema", "is required for csv without header"),
    ('[streams.t]\ntopic = "a/b"\nschema = {a = "int64"}\nqos = 2', "streams.t.qos", "must be 0 or 1"),
    ('[streams.t]\ntopic = "a/b"\nschema = {a = "int64"}\nevent_time = "b"', "streams.t.event_time", "not a column"),
    ('[streams.t]\ntopic = "a/b"\nschema = {a = "int64"}\nevent_time = "a"', "streams.t.event_time", "timestamp"),
    ('[subscriptions.s]\nsql = "SELECT 1"', "subscriptions.s.output", "is required"),
    ('[subscriptions.s]\noutput = "x"', "subscriptions.s.sql", "is required"),
    ('[subscriptions.s]\nsql = "SELECT 1"\noutput = "x/#"', "subscriptions.s.output", "wildcards"),
    ('[subscriptions.s]\nsql = "SELECT 1"\noutput = "x"\nformat = "arrow"', "subscriptions.s.format",
     "needs batch = true"),
    ('[broker]\nurl = "http://x"', "broker.url", "unsupported broker URL"),
    ('[broker]\nprotocol = "4"', "broker.protocol", "must be"),
    ('[broker]\ntls_ca = "/nonexistent/ca.pem"', "broker.tls_ca", "not found"),
    ('[tables.m]\npath = "m.xlsx"', "tables.m.path", ".csv or .parquet"),
    ('[embedded]\nlisten = "1883"', "embedded.listen", "host:port"),
    ('[embedded]\nlisten = "127.0.0.1:99999"', "embedded.listen", "host:port"),
    ('[embedded]\nbroker_config = "/nonexistent/amqtt.yaml"', "embedded.broker_config", "not found"),
    ('[embedded]\nport = 1883', "embedded.port", "unknown key"),
    ('streams = 5', "streams", "expected a table"),
])
def test_config_errors_name_file_key_and_problem(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert words in str(info.value)


def test_parse_config_rejects_duplicate_names():
    with pytest.raises(ConfigError, match="unique"):
        parse_config({"streams": {"m": {"topic": "a", "schema": {"x": "int64"}}}, "tables": {"m": {"path": "m.csv"}}})


def test_batching_keys(tmp_path):
    text = '[engine]\nbatching = "delay"\nbatch_max_bytes = "1MB"\nbatch_linger = "5ms"\n'
    config = load_config(write(tmp_path, text))
    assert config.engine.batching == "delay" and config.engine.batch_max_bytes == 1_000_000
    assert config.engine.batch_linger == 0.005


NAMES = ["hot", "_x", "Line_2", "a" * 64, "café", "数据", "a-b", "2fast", "a" * 65, "a\n", "a b", "ﬁ", "Ⅸ", ""]


@pytest.mark.parametrize("name", NAMES)
def test_config_names_follow_the_control_protocols_rule(name):
    """A config-file name is accepted exactly when a control request can address it (one rule for both)."""
    from arros_mqtt.control.protocol import ControlError, parse_request

    try:
        parse_request(orjson.dumps({"op": "drop", "name": name}))
        addressable = True
    except ControlError:
        addressable = False
    sections = {
        "streams": {name: {"topic": "a/b", "schema": {"x": "int64"}}},
        "tables": {name: {"path": "m.csv"}},
        "subscriptions": {name: {"sql": "SELECT 1", "output": "x"}},
        "connectors": {name: {"kind": "modbus", "stream": "s"}},
    }
    for kind, section in sections.items():
        try:
            parse_config({kind: section})
            accepted = True
        except ConfigError as exc:
            # refused for another reason (e.g. the connector's missing stream): the name passed
            accepted = exc.key != f"{kind}.{name}" or "ASCII letters" not in str(exc)
        assert accepted == addressable, (kind, name)
