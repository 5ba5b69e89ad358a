"""The control plane's parts without a broker: request parsing, the store on disk, limits, config."""

from __future__ import annotations

import os

import msgpack
import orjson
import pytest

from arros_mqtt.config import SubscriptionConfig, parse_config
from arros_mqtt.control.limits import Limits
from arros_mqtt.control.protocol import MAX_REQUEST_BYTES, ControlError, envelope, parse_request
from arros_mqtt.control.store import StoredSubscription, SubscriptionStore
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.core.topics import OutputTemplate
from arros_mqtt.engine import Engine


def test_json_and_msgpack_requests_parse_alike():
    body = {"op": "create", "name": "hot", "sql": "SELECT 1", "output": "o", "qos": 0, "request_id": 3}
    for payload in (orjson.dumps(body), b"  \n" + orjson.dumps(body), msgpack.packb(body)):
        request = parse_request(payload)
        assert (request.op, request.name, request.request_id) == ("create", "hot", 3)
        assert request.definition == {"sql": "SELECT 1", "output": "o", "qos": 0}


@pytest.mark.parametrize(("payload", "words"), [
    (b"x" * (MAX_REQUEST_BYTES + 1), "the limit is 65536"),
    (b"{}", "'op' is required"),
    (b'{"op": "merge"}', "unknown op 'merge'"),
    (b'{"op": "list", "name": "x"}', "unknown key 'name' for list"),
    (b'{"op": "drop"}', "'name' is required"),
    (b'{"op": "explain"}', "either 'name'"),
    (b'{"op": "list", "request_id": 1.5}', "request_id must be"),
    (b'{"op": "list", "request_id": true}', "request_id must be"),
    (b'{"op": "list", "reply_to": ""}', "reply_to must be"),
    (b'{"op": "list"', "invalid JSON"),
    (b"\xc1", "not a JSON object or a msgpack map"),
])
def test_invalid_requests_say_what_is_wrong(payload, words):
    with pytest.raises(ControlError) as info:
        parse_request(payload)
    assert info.value.code == "invalid_request" and words in info.value.message


def test_envelope_of_a_malformed_request_keeps_only_valid_parts():
    assert envelope({"op": 1, "request_id": "r", "reply_to": "a/b"}).reply_to == "a/b"
    assert envelope({"request_id": {"x": 1}, "reply_to": "a/#"}) == envelope([])


def test_store_roundtrip_and_atomic_rewrite(tmp_path):
    store = SubscriptionStore(tmp_path / "state")
    assert store.load() == {}
    store.put(StoredSubscription("a", {"sql": "SELECT 1", "output": "o"}, "2026-01-01T00:00:00.000Z"))
    store.put(StoredSubscription("b", {"sql": "SELECT 2", "output": "o"}, "2026-01-01T00:00:00.000Z", "why"))
    store.remove("a")
    again = SubscriptionStore(tmp_path / "state")
    assert again.load() == {"b": StoredSubscription("b", {"sql": "SELECT 2", "output": "o"},
                                                      "2026-01-01T00:00:00.000Z", "why")}
    assert os.listdir(tmp_path / "state") == ["subscriptions.json"]


def test_store_failure_changes_nothing(tmp_path):
    """A write that fails (here: the file's name is taken by a directory) leaves no temporary file and
    keeps the entries as they were, so the request fails and nothing half-happens."""
    store = SubscriptionStore(tmp_path)
    store.put(StoredSubscription("a", {"sql": "SELECT 1"}, "t"))
    store.path.unlink()
    store.path.mkdir()
    (store.path / "keep").write_text("x")
    with pytest.raises(OSError):
        store.put(StoredSubscription("b", {"sql": "SELECT 2"}, "t"))
    assert set(store.entries) == {"a"} and sorted(p.name for p in tmp_path.iterdir()) == ["subscriptions.json"]


def test_unreadable_store_is_set_aside(tmp_path):
    (tmp_path / "subscriptions.json").write_bytes(b"{ torn")
    assert SubscriptionStore(tmp_path).load() == {}
    assert [p.name.startswith("subscriptions.json.unreadable-") for p in tmp_path.iterdir()] == [True]


def test_state_limit_pauses_a_subscription_with_a_reason():
    """Per-row subscriptions hold no state; windowed ones report theirs in stats.state_bytes."""
    config = parse_config({"streams": {"t": {"topic": "t/{m}", "schema": {"v": "int64"}}},
                           "control": {"max_state_bytes": "1KiB"}})
    engine = Engine(config.streams)
    for name in ("small", "big"):
        engine.add(SubscriptionConfig(name, "SELECT m, v FROM t", OutputTemplate.parse("o")))
    limits = Limits(config.control, engine.pause)
    engine.subscriptions["small"].stats.state_bytes = 1024
    engine.subscriptions["big"].stats.state_bytes = 1025
    limits.check_state(engine.subscriptions.values(), engine.paused)
    assert engine.paused == {"big": "state limit: 1025 bytes of state exceed [control] max_state_bytes = 1024"}


@pytest.mark.parametrize(("control", "key"), [
    ({"max_subscriptions": "10"}, "control.max_subscriptions"),
    ({"max_subscriptions": -1}, "control.max_subscriptions"),
    ({"max_output_rate": 1.5}, "control.max_output_rate"),
    ({"max_state_bytes": "lots"}, "control.max_state_bytes"),
    ({"max_state_bytes": -5}, "control.max_state_bytes"),
    ({"status_interval": "0s"}, "control.status_interval"),
    ({"max_subscribers": 1}, "control.max_subscribers"),
])
def test_control_limits_are_parsed_strictly(control, key):
    with pytest.raises(ConfigError) as info:
        parse_config({"control": control})
    assert info.value.key == key


def test_control_and_metrics_config():
    config = parse_config({"control": {"max_subscriptions": 5, "max_state_bytes": "64MB", "max_output_rate": 200,
                                       "status_interval": "2s"}, "metrics": {"listen": "127.0.0.1:9108"}})
    assert (config.control.max_subscriptions, config.control.max_state_bytes, config.control.max_output_rate,
            config.control.status_interval) == (5, 64_000_000, 200, 2.0)
    assert config.metrics.listen == "127.0.0.1:9108"
    assert parse_config({"control": {"max_state_bytes": "1.5GiB"}}).control.max_state_bytes == 1536 * 2**20
    with pytest.raises(ConfigError, match="host:port"):
        parse_config({"metrics": {"listen": "9108"}})


def test_a_state_limit_names_the_groups_holding_the_most_state():
    """The limit is per subscription, so one device can pause an aggregate for everyone: the reason says
    which one."""
    import pyarrow as pa

    config = parse_config({"streams": {"t": {"topic": "t/{m}", "schema": {"v": "int64"}}},
                           "control": {"max_state_bytes": "1KiB"}})
    engine = Engine(config.streams)
    sql = "SELECT tumble(_received_at, INTERVAL '1 hour') AS w, m, median(v) AS v FROM t GROUP BY w, m"
    sub = engine.add(SubscriptionConfig("raw", sql, OutputTemplate.parse("o")))
    n = 500
    engine.process("t", pa.table({
        "v": pa.array(range(n), pa.int64()), "m": pa.array(["noisy"] * (n - 2) + ["a", "b"]),
        "_topic": pa.array(["t/x"] * n),
        "_received_at": pa.array([1_764_000_000_000] * n, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    }, schema=config.streams["t"].full_schema()))
    Limits(config.control, engine.pause).check_state(engine.subscriptions.values(), engine.paused)
    assert sub.stats.state_bytes > 1024
    assert "most state rows: m='noisy' (498 rows, 99%)" in engine.paused["raw"]
