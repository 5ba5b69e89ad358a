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


# -- every role's allowed and refused topics, on both brokers (issue 20 item 8) --

ARROS_WRITES = ["arros/health", "arros/connectors/press/status", "arros/status/hot", "arros/deadletter/telemetry",
                "arros/catalog/hot", "arros/control/replies/op-1", "alerts/l1/m1", "derived/oee",
                "spBv1.0/STATE/arros", "spBv1.0/g1/NCMD/n1"]
# (user, topic, may publish); `arros`, `m1` and `m2` exist on Mosquitto only (Arros publishes inside amqtt)
PUBLISH = [
    ("device", "factory/l1/m1/telemetry", True), ("device", "cell/c1/r1/telemetry", True),
    ("device", "arros/control", False), ("device", "alerts/l1/m1", False), ("device", "arros/catalog/hot", False),
    ("device", "arros/health", False),
    ("dashboard", "factory/l1/dashboard/telemetry", False), ("dashboard", "factory/l1/m1/telemetry", False),
    ("dashboard", "arros/control", False), ("dashboard", "alerts/l1/m1", False),
    ("operator", "arros/control", True), ("operator", "factory/l1/operator/telemetry", False),
    ("operator", "alerts/l1/m1", False), ("operator", "arros/catalog/hot", False),
]
MOSQUITTO_PUBLISH = [
    *PUBLISH,
    ("m1", "factory/l1/m1/telemetry", True), ("m1", "factory/l1/m2/telemetry", False), ("m1", "arros/control", False),
    *[("arros", topic, True) for topic in ARROS_WRITES],
    ("arros", "factory/l1/arros/telemetry", False), ("arros", "factory/l1/m1/telemetry", False),
    ("arros", "arros/control", False), ("arros", "spBv1.0/g1/NDATA/n1", False), ("arros", "spBv1.0/STATE/other", False),
]
# (user, topic filter, may subscribe)
SUBSCRIBE = [
    ("device", "factory/+/+/telemetry", False), ("device", "alerts/#", False),
    ("device", "arros/control/replies/#", False),
    ("dashboard", "alerts/#", True), ("dashboard", "derived/#", True), ("dashboard", "arros/health", True),
    ("dashboard", "arros/connectors/+/status", True), ("dashboard", "arros/status/#", True),
    ("dashboard", "arros/control", False), ("dashboard", "arros/control/replies/#", False),
    ("dashboard", "factory/+/+/telemetry", False),
    ("operator", "arros/control/replies/#", True), ("operator", "arros/health", True),
    ("operator", "arros/connectors/+/status", True), ("operator", "arros/deadletter/#", True),
    ("operator", "factory/+/+/telemetry", False), ("operator", "arros/control", False),
]
MOSQUITTO_SUBSCRIBE = [
    *SUBSCRIBE,
    ("arros", "factory/+/+/telemetry", True), ("arros", "arros/control", True), ("arros", "arros/catalog/#", True),
    ("arros", "spBv1.0/#", True), ("arros", "alerts/#", False), ("m1", "factory/+/+/telemetry", False),
]


def auth_of(user: str) -> tuple[str, str]:
    return user, f"{user}-example-password"


def subscribe_codes(port: int, user: str, filters: list[str], protocol: int) -> list[int]:
    """The SUBACK codes for one SUBSCRIBE per filter (granted QoS, or >= 128 when refused)."""
    client, _ = connect(port, auth_of(user), protocol)
    codes = []
    try:
        acked, results = threading.Event(), []
        client.on_subscribe = lambda _c, _u, _mid, reasons, _p: (results.append(reasons[0].value), acked.set())
        for topic_filter in filters:
            acked.clear()
            client.subscribe(topic_filter, qos=1)
            assert acked.wait(10), "no SUBACK"
            codes.append(results[-1])
    finally:
        close(client)
    return codes


def drop_with_will(port: int, user: str, topic: str, protocol: int) -> None:
    """Connect with a retained Last Will on `topic`, then vanish without DISCONNECT (so the broker sends it)."""
    client = new_client(port, protocol=protocol)
    client.username_pw_set(*auth_of(user))
    client.will_set(topic, b'{"forged": true}', qos=1, retain=True)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(HOST, port)
    for _ in range(100):
        if connected.is_set():
            break
        client.loop(0.1)
    assert connected.is_set(), "no CONNACK"
    client.socket().close()


def test_mosquitto_roles_publish_only_what_the_acl_grants(shipped_mosquitto):
    port = shipped_mosquitto.port
    refused = []
    for user, topic, allowed in MOSQUITTO_PUBLISH:
        client, rc = connect(port, auth_of(user))  # a connection each: Mosquitto drops one after a refusal
        assert not rc.is_failure, (user, rc)
        code = publish_reason(client, topic, b'{"temp": 1}')
        close(client)
        if (code < 128) != allowed:
            refused.append((user, topic, code))
    assert refused == [], "publishes the ACL decided wrongly (user, topic, PUBACK code)"


def example_topic(topic_filter: str, index: int) -> tuple[str, str]:
    """A topic matching `topic_filter` (distinct per case) and the role allowed to publish it."""
    topic = "spBv1.0/STATE/arros" if topic_filter == "spBv1.0/#" else re.sub(r"^\+$|^#$", f"x{index}",
                                                                             topic_filter.replace("/+/", f"/x{index}/"))
    topic = topic.replace("/#", f"/x{index}").replace("/+", f"/x{index}")
    writer = "device" if topic.startswith("factory/") else "operator" if topic == "arros/control" else "arros"
    return topic, writer


def test_mosquitto_roles_read_only_what_the_acl_grants(shipped_mosquitto):
    """Mosquitto 2.0 grants every SUBSCRIBE and applies `topic read` at delivery: each role subscribes,
    a role allowed to write publishes a matching topic, and only the granted readers receive it."""
    port = shipped_mosquitto.port
    readers = []
    for index, (user, topic_filter, allowed) in enumerate(MOSQUITTO_SUBSCRIBE):
        topic, writer = example_topic(topic_filter, index)
        reader = Collector(port, [topic_filter], auth=auth_of(user))
        readers.append((user, topic_filter, allowed, topic, writer, reader))
    for _user, _filter, _allowed, topic, writer, _reader in readers:
        client, _ = connect(port, auth_of(writer))
        assert publish_reason(client, topic, b"{}") < 128, (writer, topic)
        close(client)
    for _user, _filter, allowed, _topic, _writer, reader in readers:
        if allowed:
            reader.wait_for(1, timeout=10)
    wrong = []
    for user, topic_filter, allowed, topic, _writer, reader in readers:  # the refused ones had that long as well
        reader.close()
        if (topic in [t for t, _ in reader.messages]) != allowed:
            wrong.append((user, topic_filter, topic))
    assert wrong == [], "reads the ACL decided wrongly (user, filter, topic)"


def test_mosquitto_sends_no_forged_will_and_cuts_oversized_packets(shipped_mosquitto):
    port = shipped_mosquitto.port
    dashboard = Collector(port, ["alerts/#", "arros/catalog/#"], auth=DASHBOARD)
    service_view = Collector(port, ["factory/+/+/telemetry"], auth=ARROS)
    drop_with_will(port, "device", "alerts/l1/forged", mqtt.MQTTv5)
    drop_with_will(port, "device", "arros/catalog/forged", mqtt.MQTTv5)
    drop_with_will(port, "device", "factory/l1/m1/telemetry", mqtt.MQTTv5)  # its own topic: this will is sent
    got = service_view.wait_for(1, timeout=15)
    assert got == [("factory/l1/m1/telemetry", b'{"forged": true}')]
    # max_packet_size: 1 MiB passes whole, a bigger packet costs the sender its connection.
    device, _ = connect(port, DEVICE)
    disconnected = threading.Event()
    device.on_disconnect = lambda *_: disconnected.set()
    assert publish_reason(device, "factory/l1/m1/telemetry", b"x" * 1_000_000) < 128
    device.publish("factory/l1/m1/telemetry", b"x" * 1_100_000, qos=1)
    assert disconnected.wait(10), "an oversized packet was accepted"
    close(device)
    received = service_view.wait_for(2, timeout=5)
    dashboard.close()
    service_view.close()
    forged = [topic for topic, _ in dashboard.messages if topic.endswith("/forged")]  # (the broker is shared)
    assert forged == [], "a device's will forged an alert or a catalogue entry"
    assert [len(payload) for _, payload in received[1:]] == [1_000_000]


def embedded_service_text(tmp_path, port: int) -> str:
    yaml_text = substitute((CONFIG / "amqtt.yaml").read_text(), {
        r"password_file: broker-config/amqtt\.passwd": f"password_file: {CONFIG}/amqtt.passwd",
    })
    (tmp_path / "amqtt.yaml").write_text(yaml_text)
    return f'[embedded]\nlisten = "{HOST}:{port}"\nbroker_config = "{tmp_path / "amqtt.yaml"}"\n' + SERVICE


def test_embedded_roles_against_the_shipped_amqtt_yaml(tmp_path):
    """amqtt 3.1.1 has no PUBACK reason: what passed its ACL is what the broker hands its plugins (seen
    in-process), each publish followed by a device's sentinel so a refusal is known, not waited for."""
    port = free_port()
    v311 = mqtt.MQTTv311
    seen: list[str] = []
    with running_service(embedded_service_text(tmp_path, port), tmp_path) as service:
        plugin = service.transport.plugin
        plugin.subscribe_local("#", lambda topic, _payload: seen.append(topic))
        device, _ = connect(port, DEVICE, v311)
        wrong = []
        for index, (user, topic, allowed) in enumerate(PUBLISH):
            client, rc = connect(port, auth_of(user), v311)
            assert not rc.is_failure, (user, rc)
            client.publish(topic, b'{"temp": 1}', qos=1).wait_for_publish(10)
            close(client)
            sentinel = f"factory/sentinel/s{index}/telemetry"
            device.publish(sentinel, b'{"temp": 1}', qos=1).wait_for_publish(10)
            for _ in range(200):
                if sentinel in seen:
                    break
                threading.Event().wait(0.05)
            assert sentinel in seen, "the sentinel never passed"
            if (topic in seen) != allowed:
                wrong.append((user, topic))
            seen.clear()
        close(device)
        for user in {user for user, _, _ in SUBSCRIBE}:
            cases = [(topic, allowed) for u, topic, allowed in SUBSCRIBE if u == user]
            codes = subscribe_codes(port, user, [topic for topic, _ in cases], v311)
            wrong += [(user, topic, code) for (topic, allowed), code in zip(cases, codes, strict=True)
                      if (code < 128) != allowed]
        # Last Wills: the forged ones are never sent (nor retained); a device's will on its own topic is.
        dashboard = Collector(port, ["alerts/#", "arros/catalog/#"], protocol=v311, auth=DASHBOARD)
        drop_with_will(port, "device", "alerts/l1/forged", v311)
        drop_with_will(port, "device", "arros/catalog/forged", v311)
        drop_with_will(port, "device", "factory/l1/m1/telemetry", v311)
        retained = plugin.context.retained_messages
        for _ in range(200):
            if "factory/l1/m1/telemetry" in retained:
                break
            threading.Event().wait(0.05)
        retained_topics = set(retained)
        dashboard.close()
        for _ in range(200):  # what the broker handed Arros (a will, like any PUBLISH)
            if "factory/l1/m1/telemetry" in seen:
                break
            threading.Event().wait(0.05)
        wills_seen = set(seen)
    assert wrong == [], "what amqtt's ACL decided wrongly"
    assert "factory/l1/m1/telemetry" in retained_topics, "the permitted will was not sent"
    assert not {"alerts/l1/forged", "arros/catalog/forged"} & retained_topics, "a forged will was retained"
    assert [topic for topic, _ in dashboard.messages if topic.endswith("/forged")] == [], "a forged will was sent"
    assert "factory/l1/m1/telemetry" in wills_seen, "the permitted will never reached Arros"
    assert not {"alerts/l1/forged", "arros/catalog/forged"} & wills_seen, "a forged will reached Arros"
