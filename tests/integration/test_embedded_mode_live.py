"""The embedded broker's own parts (its amqtt config: tests/unit/test_embedded_mode.py): the plugin on a
real amqtt broker (errors in the hook are logged by us, a hook blocked by a full engine buffer loses
nothing), and the control topic served inside the broker."""

from __future__ import annotations

import logging
import threading

import orjson
from paho.mqtt.client import MQTTv311

from arros_mqtt.config import BrokerConfig, EmbeddedConfig, parse_config
from arros_mqtt.control.client import ControlClient
from arros_mqtt.transport.embedded_broker import EmbeddedTransport
from tests.support import HOST, Collector, arros_command, free_port, publish_all, running_service, unique

STREAMS = parse_config({"streams": {"s": {"topic": "in/{device}", "schema": {"v": "int64"}}}}).streams


def run_transport(deliver, messages: list[tuple[str, bytes]]) -> None:
    port = free_port()
    transport = EmbeddedTransport(EmbeddedConfig(listen=f"{HOST}:{port}"), list(STREAMS.values()))
    transport.start(deliver, connect_wait=10)
    try:
        publish_all(port, messages, protocol=MQTTv311, sync=True)
    finally:
        transport.stop_receiving()
        transport.flush(5)
        transport.close()


def test_hook_errors_are_logged_not_hidden(caplog):
    def deliver(stream, topic, payload, received_ms):
        raise RuntimeError("engine exploded")

    with caplog.at_level(logging.ERROR, logger="arros_mqtt.transport.amqtt_plugin"):
        run_transport(deliver, [("in/d1", b"{}")])
    assert "not handed to the engine" in caplog.text and "engine exploded" in caplog.text


def test_a_blocked_hook_loses_and_reorders_nothing():
    """`deliver` blocking (a full engine buffer) stalls the broker's loop; every message still arrives, in order."""
    got: list[int] = []
    release = threading.Event()
    threading.Timer(1.0, release.set).start()

    def deliver(stream, topic, payload, received_ms):
        if not got:
            release.wait(5)  # the first message finds the buffer full for a second
        got.append(orjson.loads(payload)["v"])

    run_transport(deliver, [("in/d1", orjson.dumps({"v": i})) for i in range(300)])
    assert got == list(range(300))


def test_control_topic_inside_the_embedded_broker(tmp_path):
    """Run-time subscriptions over MQTT 3.1.1 (reply_to + request_id), the retained catalogue and `arros sub`."""
    prefix, port = unique(), free_port()
    text = f"""
[embedded]
listen = "{HOST}:{port}"
[engine]
state_dir = "{tmp_path / 'state'}"
[control]
prefix = "{prefix}/arros"
[streams.s]
topic = "{prefix}/in/{{device}}"
schema = {{ v = "int64" }}
"""
    control = ControlClient(BrokerConfig(url=f"mqtt://{HOST}:{port}", protocol="3.1.1"), f"{prefix}/arros")
    with running_service(text, tmp_path) as service:
        created = control.request({"op": "create", "name": "hot", "sql": "SELECT device, v FROM s WHERE v > 5",
                                   "output": f"{prefix}/hot/{{device}}"})
        assert created["ok"], created
        catalog = Collector(port, [f"{prefix}/arros/catalog/#"], protocol=MQTTv311)  # retained by the broker
        entry = orjson.loads(catalog.wait_for(1)[0][1])
        catalog.close()
        assert entry["name"] == "hot" and entry["sql"].startswith("SELECT device")
        out = Collector(port, [f"{prefix}/hot/#"], protocol=MQTTv311)
        publish_all(port, [(f"{prefix}/in/d1", orjson.dumps({"v": v})) for v in range(10)], protocol=MQTTv311,
                    sync=True)
        got = sorted(orjson.loads(p)["v"] for _, p in out.wait_for(4))
        out.close()
        config = tmp_path / "arros.toml"
        config.write_text(text)
        listed = arros_command("sub", "list", "-c", str(config), "--json")  # finds the embedded broker itself
        assert control.request({"op": "drop", "name": "hot"})["ok"]
        assert "hot" not in service.engine.subscriptions
    assert got == [6, 7, 8, 9]
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in orjson.loads(listed.stdout)["result"]["subscriptions"]] == ["hot"]


def test_retained_messages_go_only_to_their_subscribers():
    """amqtt 0.12.1 alone sends a connecting client the retained messages of every filter in the broker."""
    port = free_port()
    transport = EmbeddedTransport(EmbeddedConfig(listen=f"{HOST}:{port}"), [])
    transport.start(lambda *_: None, connect_wait=10)
    try:
        transport.publish("r/catalog/hot", b"entry", 1, retain=True)
        assert transport.flush(5)
        first = Collector(port, ["r/catalog/#"], protocol=MQTTv311)
        assert first.wait_for(1, timeout=10) == [("r/catalog/hot", b"entry")]
        other = Collector(port, ["r/alerts/#"], protocol=MQTTv311)  # connects while `first` subscribes r/catalog/#
        unrelated = other.wait_for(1, timeout=1)
        first.close()
        other.close()
    finally:
        transport.close()
    assert unrelated == []
