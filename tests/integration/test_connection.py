"""Client-mode connections: MQTT 3.1.1 and 5, persistent sessions, TLS and passwords (reconnecting after a
broker restart: tests/faults/test_connection_faults.py)."""

from __future__ import annotations

import subprocess

import orjson
import pytest

from tests.support import (
    HOST,
    Collector,
    free_port,
    publish_all,
    run_as_me,
    running_service,
    unique,
)


def service_config(prefix: str, broker: str = "", qos: int = 1) -> str:
    return f"""
{broker}
[control]
prefix = "{prefix}/arros"
[streams.s]
topic = "{prefix}/in/{{device}}"
schema = {{ v = "int64" }}
qos = {qos}
[subscriptions.copy]
sql = "SELECT device, v FROM s"
output = "{prefix}/out/{{device}}"
"""


def values(messages) -> list[int]:
    return sorted(orjson.loads(p)["v"] for _, p in messages)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_both_protocol_versions(mosquitto, tmp_path, protocol):
    prefix = unique()
    broker = f'[broker]\nclient_id = "{unique("arros-")}"\nprotocol = "{protocol}"'
    with running_service(service_config(prefix, broker), tmp_path, mosquitto.url):
        out = Collector(mosquitto.port, [f"{prefix}/out/#"])
        publish_all(mosquitto.port, [(f"{prefix}/in/d1", orjson.dumps({"v": i})) for i in range(200)])
        assert values(out.wait_for(200)) == list(range(200))
        out.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_persistent_session_delivers_what_was_published_while_down(mosquitto, tmp_path, protocol):
    """SPEC section 8: QoS 1 with a persistent session loses nothing across a restart of Arros."""
    prefix = unique()
    broker = f'[broker]\nclient_id = "{unique("arros-")}"\nprotocol = "{protocol}"'
    text = service_config(prefix, broker)
    out = Collector(mosquitto.port, [f"{prefix}/out/#"])
    with running_service(text, tmp_path, mosquitto.url):
        publish_all(mosquitto.port, [(f"{prefix}/in/d1", orjson.dumps({"v": i})) for i in range(100)])
        out.wait_for(100)
    publish_all(mosquitto.port, [(f"{prefix}/in/d1", orjson.dumps({"v": i})) for i in range(100, 300)])
    with running_service(text, tmp_path, mosquitto.url):
        got = out.wait_for(300)
    out.close()
    assert values(got) == list(range(300))


def _make_certs(directory) -> dict[str, str]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=arros-test-ca")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.pem", "-copy_extensions", "copy")
    return {n: str(directory / n) for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_tls_with_client_certificate_and_password(tmp_path, mosquitto):
    """A TLS listener that requires a client certificate and a username/password; results go to the
    plain listener of the same broker so the test's own subscriber needs no TLS."""
    certs = _make_certs(tmp_path)
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "edge", "s3cret"], check=True)
    tls_port, plain_port = free_port(), free_port()
    extra = (f"listener {tls_port} {HOST}\ncafile {certs['ca.pem']}\ncertfile {certs['server.pem']}\n"
             f"keyfile {certs['server.key']}\nrequire_certificate true\npassword_file {passwords}\n"
             f"allow_anonymous false\n")
    config = tmp_path / "tls.conf"
    plain = f"per_listener_settings true\n{run_as_me()}listener {plain_port} {HOST}\nallow_anonymous true\n"
    config.write_text(plain + extra)
    from tests.support import Mosquitto

    broker = Mosquitto(plain_port, config).start()
    prefix = unique()
    settings = (f'[broker]\nclient_id = "{unique("arros-")}"\nusername = "edge"\npassword = "s3cret"\n'
                f'tls_ca = "{certs["ca.pem"]}"\ntls_cert = "{certs["client.pem"]}"\ntls_key = "{certs["client.key"]}"')
    try:
        with running_service(service_config(prefix, settings), tmp_path, f"mqtts://{HOST}:{tls_port}") as service:
            assert service.config.broker.tls
            out = Collector(plain_port, [f"{prefix}/out/#"])
            publish_all(plain_port, [(f"{prefix}/in/d1", orjson.dumps({"v": i})) for i in range(20)])
            assert values(out.wait_for(20)) == list(range(20))
            out.close()
    finally:
        broker.stop()


def test_wrong_password_is_retried_not_fatal(tmp_path):
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "edge", "right"], check=True)
    port = free_port()
    config = tmp_path / "auth.conf"
    config.write_text(f"{run_as_me()}listener {port} {HOST}\nallow_anonymous false\npassword_file {passwords}\n")
    from arros_mqtt.config import load_config
    from arros_mqtt.service.runtime import Service
    from tests.support import Mosquitto

    broker = Mosquitto(port, config).start()
    path = tmp_path / "wrong.toml"
    path.write_text(service_config(unique(), f'[broker]\nclient_id = "{unique("a-")}"\nusername = "edge"\n'
                                              'password = "wrong"'))
    service = Service(load_config(path).with_broker_url(broker.url))
    try:
        service.start(connect_wait=0.5)  # does not raise, does not exit: it keeps retrying with backoff
        assert not service.transport.subscribed.wait(2)
    finally:
        service.stop(timeout=1)
        broker.stop()
