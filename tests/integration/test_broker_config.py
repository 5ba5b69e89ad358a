"""broker-config/ as shipped: Mosquitto and the embedded amqtt broker start from those very files (only
the port, file paths and the user Mosquitto runs as are replaced), Arros works through them, and their
ACLs refuse what they should: a device publishing to the control topic, a dashboard feeding telemetry
(on Mosquitto and on the embedded broker)."""

from __future__ import annotations

import re
import shutil
import threading

import orjson
import paho.mqtt.client as mqtt
import pytest

from arros_mqtt.config import BrokerConfig
from arros_mqtt.control.client import ControlClient
from tests.support import (
    HOST,
    ROOT,
    Collector,
    Mosquitto,
    free_port,
    new_client,
    publish_all,
    run_as_me,
    running_service,
    unique,
)

CONFIG = ROOT / "broker-config"
OPERATOR, DEVICE, DASHBOARD, ARROS = ((user, f"{user}-example-password")
                                      for user in ("operator", "device", "dashboard", "arros"))
SERVICE = """
[engine]
batch_max_delay = "10ms"
[streams.telemetry]
topic = "factory/{line}/{machine}/telemetry"
schema = { temp = "float64" }
[subscriptions.hot]
sql = "SELECT line, machine, temp FROM telemetry WHERE temp > 80"
output = "alerts/{line}/{machine}"
"""


def substitute(text: str, replacements: dict[str, str]) -> str:
    for pattern, replacement in replacements.items():
        text, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert n >= 1, f"broker-config changed: {pattern!r} not found"
    return text


@pytest.fixture(scope="module")
def shipped_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Mosquitto:
    directory = tmp_path_factory.mktemp("shipped-mosquitto")
    port = free_port()
    shutil.copy(CONFIG / "mosquitto.passwd.example", directory / "mosquitto.passwd")  # readable as its user
    text = substitute((CONFIG / "mosquitto.conf").read_text(), {
        r"^listener 1883 0\.0\.0\.0$": f"listener {port} {HOST}",
        r"/etc/mosquitto/arros/mosquitto\.passwd": f"{directory}/mosquitto.passwd",
        r"/etc/mosquitto/arros/mosquitto\.acl": f"{CONFIG}/mosquitto.acl",
        r"^persistence_location .*$": f"persistence_location {directory}/",
    })
    config = directory / "mosquitto.conf"
    config.write_text(text + run_as_me())
    broker = Mosquitto(port, config).start()
    yield broker
    broker.stop()


def connect(port: int, auth: tuple[str, str] | None, protocol: int = mqtt.MQTTv5) -> tuple[mqtt.Client, object]:
    """A started client and its CONNACK reason code."""
    client = new_client(port, protocol=protocol)
    if auth:
        client.username_pw_set(*auth)
    answered, result = threading.Event(), {}
    client.on_connect = lambda _c, _u, _f, reason, _p: (result.setdefault("rc", reason), answered.set())
    client.connect(HOST, port)
    client.loop_start()
    assert answered.wait(10), "no CONNACK"
    return client, result["rc"]


def publish_reason(client: mqtt.Client, topic: str, payload: bytes) -> int:
    """Publish at QoS 1 and return the PUBACK's reason code (MQTT 5)."""
    acked, result = threading.Event(), {}
    client.on_publish = lambda _c, _u, _mid, reason, _p: (result.setdefault("rc", reason), acked.set())
    client.publish(topic, payload, qos=1)
    assert acked.wait(10), "no PUBACK"
    return result["rc"].value


def close(*clients: mqtt.Client) -> None:
    for client in clients:
        client.disconnect()
        client.loop_stop()


def test_mosquitto_acl_lets_only_the_operator_publish_to_control(shipped_mosquitto):
    port = shipped_mosquitto.port
    control = Collector(port, ["arros/control"], auth=ARROS)  # Arros's own view of the control topic
    device, rc = connect(port, DEVICE)
    assert not rc.is_failure
    assert publish_reason(device, "arros/control", b'{"op": "drop", "name": "hot"}') == 135  # not authorized
    assert publish_reason(device, "factory/l1/m1/telemetry", b'{"temp": 1}') < 128  # 0 or 16 (no subscribers)
    operator, _ = connect(port, OPERATOR)
    assert publish_reason(operator, "arros/control", b'{"op": "list"}') == 0
    received = control.wait_for(1, timeout=10)
    close(device, operator)
    control.close()
    assert received == [("arros/control", b'{"op": "list"}')], "the device's request never reached Arros"


def test_mosquitto_refuses_anonymous_and_wrong_passwords(shipped_mosquitto):
    for auth in (None, ("operator", "wrong")):
        client, rc = connect(shipped_mosquitto.port, auth)
        close(client)
        assert rc.is_failure and rc.value in (134, 135), rc  # bad user name or password / not authorized


def test_arros_client_mode_through_the_shipped_mosquitto(shipped_mosquitto, tmp_path):
    port = shipped_mosquitto.port
    url = f"mqtt://{ARROS[0]}:{ARROS[1]}@{HOST}:{port}"
    text = f'[broker]\nclient_id = "{unique("arros-")}"\n' + SERVICE
    with running_service(text, tmp_path, url):
        dashboard = Collector(port, ["alerts/#"], auth=DASHBOARD)
        temps = [70.0, 85.5, 90.0, 10.0, 81.0]
        publish_all(port, [("factory/l1/m1/telemetry", orjson.dumps({"temp": t})) for t in temps], auth=DEVICE)
        got = dashboard.wait_for(3, timeout=15)
        dashboard.close()
    assert sorted(orjson.loads(p)["temp"] for _, p in got) == [81.0, 85.5, 90.0]


def test_embedded_broker_from_the_shipped_amqtt_yaml(tmp_path):
    yaml_text = substitute((CONFIG / "amqtt.yaml").read_text(), {
        r"password_file: broker-config/amqtt\.passwd": f"password_file: {CONFIG}/amqtt.passwd",
    })
    (tmp_path / "amqtt.yaml").write_text(yaml_text)
    port = free_port()
    text = f'[embedded]\nlisten = "{HOST}:{port}"\nbroker_config = "{tmp_path / "amqtt.yaml"}"\n' + SERVICE
    v311 = mqtt.MQTTv311
    with running_service(text, tmp_path) as service:
        for auth in (None, ("device", "wrong")):
            client, rc = connect(port, auth, v311)
            close(client)
            assert rc.is_failure, f"{auth} must be refused"
        dashboard = Collector(port, ["alerts/#"], protocol=v311, auth=DASHBOARD)
        # A dashboard may not publish telemetry: amqtt's ACL drops it before Arros sees it.
        publish_all(port, [("factory/l1/m9/telemetry", b'{"temp": 99}')], protocol=v311, auth=DASHBOARD)
        temps = [70.0, 85.5, 90.0, 10.0, 81.0]
        # The device stays connected until the results are out: amqtt 0.12.1 discards acknowledged
        # messages still queued inside the broker when their publisher disconnects (README, "Embedded broker").
        device, _ = connect(port, DEVICE, v311)
        for temp in temps:
            device.publish("factory/l1/m1/telemetry", orjson.dumps({"temp": temp}), qos=1).wait_for_publish(10)
        got = dashboard.wait_for(3, timeout=15)
        # The control topic: the device's request is dropped by amqtt's ACL; the operator's is answered.
        device.publish("arros/control", orjson.dumps({"op": "drop", "name": "hot"}), qos=1).wait_for_publish(10)
        operator = ControlClient(BrokerConfig(url=f"mqtt://{HOST}:{port}", username=OPERATOR[0],
                                              password=OPERATOR[1], protocol="3.1.1"), "arros")
        listed = operator.request({"op": "list"})
        close(device)
        dashboard.close()
        rows = service.pipeline.stats["telemetry"].rows
        requests = dict(service.control.requests)
    assert sorted((t, orjson.loads(p)["temp"]) for t, p in got) == [
        ("alerts/l1/m1", 81.0), ("alerts/l1/m1", 85.5), ("alerts/l1/m1", 90.0)]
    assert rows == len(temps), "the dashboard's refused publish never reached the engine"
    assert listed["ok"] and [s["name"] for s in listed["result"]["subscriptions"]] == ["hot"]
    assert requests == {("list", "ok"): 1}, "only the operator's request reached Arros"


def test_embedded_broker_config_without_auth_plugin_is_refused(tmp_path):
    (tmp_path / "amqtt.yaml").write_text("plugins:\n  amqtt.plugins.topic_checking.TopicTabooPlugin: {}\n")
    config = tmp_path / "arros.toml"
    config.write_text(f'[embedded]\nlisten = "{HOST}:{free_port()}"\nbroker_config = "{tmp_path / "amqtt.yaml"}"\n')
    from tests.support import arros_command

    result = arros_command("run", "-c", str(config))
    assert result.returncode == 2 and "auth plugin" in result.stderr and "Traceback" not in result.stderr
