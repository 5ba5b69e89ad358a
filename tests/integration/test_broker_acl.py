"""The shipped broker-config/ ACL and password file, on a real Mosquitto: only an operator may publish
control requests; a device may publish only its own telemetry; a dashboard may only read."""

from __future__ import annotations

import shutil
import threading
import time

import orjson
import paho.mqtt.client as mqtt

from arros_mqtt.config import BrokerConfig
from arros_mqtt.control.client import ControlClient, NoReply
from tests.support import HOST, ROOT, free_port, mosquitto_config, new_client, running_service

ACL = ROOT / "broker-config" / "mosquitto.acl"
PASSWORDS = ROOT / "broker-config" / "mosquitto.passwd.example"


def login(port: int, user: str) -> mqtt.Client:
    client = new_client(port)
    client.username_pw_set(user, f"{user}-example-password")
    client.connect(HOST, port)
    client.loop_start()
    return client


def publish_reason(port: int, user: str, topic: str, payload: bytes = b"{}") -> int:
    """The PUBACK reason code Mosquitto gives `user`'s QoS 1 publish (135 = not authorized).

    A connection of its own each time: with `max_queued_messages 0` (as in the test brokers)
    Mosquitto 2.0.11 drops an MQTT 5 connection right after refusing one of its QoS 1 publishes."""
    done, codes = threading.Event(), []

    def on_publish(_client, _userdata, _mid, reason_code, _properties) -> None:
        codes.append(reason_code.value)
        done.set()

    client = login(port, user)
    client.on_publish = on_publish
    client.publish(topic, payload, qos=1)
    try:
        assert done.wait(10), "no PUBACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


def test_only_operators_may_send_control_requests(tmp_path):
    passwords = tmp_path / "passwd"
    shutil.copy(PASSWORDS, passwords)  # Mosquitto wants to read it as its own user
    port = free_port()
    from arros_mqtt.testing import Mosquitto

    config = mosquitto_config(tmp_path, port, f"allow_anonymous false\npassword_file {passwords}\nacl_file {ACL}\n")
    config.write_text(config.read_text().replace("allow_anonymous true\n", ""))
    broker = Mosquitto(port, config).start()
    try:
        text = f"""
[broker]
client_id = "arros-acl"
username = "arros"
password = "arros-example-password"
[engine]
state_dir = "{tmp_path / 'state'}"
[streams.telemetry]
topic = "factory/{{line}}/{{machine}}/telemetry"
schema = {{ temp = "float64" }}
[subscriptions.hot]
sql = "SELECT machine, temp FROM telemetry WHERE temp > 90"
output = "alerts/{{machine}}"
"""
        with running_service(text, tmp_path, broker.url) as service:
            operator = BrokerConfig(url=broker.url, username="operator", password="operator-example-password")
            reply = ControlClient(operator, "arros", timeout=10).request({"op": "list"})
            assert reply["ok"] and reply["result"]["subscriptions"][0]["name"] == "hot"

            dashboard = login(port, "dashboard")
            alerts, subscribed = [], threading.Event()
            dashboard.on_message = lambda _c, _u, message: alerts.append((message.topic, message.payload))
            dashboard.on_subscribe = lambda *_: subscribed.set()
            dashboard.subscribe("alerts/#", qos=1)
            assert subscribed.wait(10)

            assert publish_reason(port, "m1", "arros/control", orjson.dumps({"op": "drop", "name": "hot"})) == 135
            assert publish_reason(port, "dashboard", "arros/control", orjson.dumps({"op": "list"})) == 135
            assert publish_reason(port, "m1", "factory/l1/m2/telemetry") == 135  # another machine's topic
            assert publish_reason(port, "m1", "factory/l1/m1/telemetry", orjson.dumps({"temp": 95})) == 0
            deadline = time.monotonic() + 10
            while not alerts and time.monotonic() < deadline:
                time.sleep(0.05)
            assert alerts == [("alerts/m1", b'{"machine":"m1","temp":95.0}')]
            dashboard.disconnect()
            dashboard.loop_stop()

            # A device cannot even get a reply: it may not read arros/control/replies/#.
            as_device = BrokerConfig(url=broker.url, username="m1", password="m1-example-password")
            try:
                ControlClient(as_device, "arros", timeout=2).request({"op": "list"})
                raise AssertionError("a device got a control reply")
            except NoReply:
                pass
            counted = dict(service.control.requests)
            assert counted == {("list", "ok"): 1}, "only the operator's request reached Arros"
            assert "hot" in service.engine.subscriptions
    finally:
        broker.stop()
