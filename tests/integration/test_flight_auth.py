"""Flight SQL with credentials and TLS: ADBC logs in with basic auth and gets a bearer token over a
self-signed certificate made here; without credentials, with wrong ones or without TLS nothing is served."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from arros_mqtt.config import FlightConfig, parse_config
from arros_mqtt.flight import FlightSources, FlightSqlServer
from arros_mqtt.testing import free_port
from tests.support import arros_command

USER, PASSWORD = "reader", "s3cret:with:colons"


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.fixture
def secured(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    config = parse_config({"flight": {"listen": f"127.0.0.1:{port}", "username": USER, "password": PASSWORD,
                                      "tls_cert": cert, "tls_key": key}})
    server = FlightSqlServer(FlightSources(config.flight, "<test>", tmp_path / "archive", None))
    server.start()
    yield port, Path(cert).read_text()
    server.stop()


def query(url: str, roots: str | None, **credentials: str) -> list:
    kwargs = {"adbc.flight.sql.client_option.tls_root_certs": roots} if roots else {}
    kwargs.update(credentials)
    with flight_sql.connect(url, db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT 40 + 2 AS answer")
        return cur.fetch_arrow_table().column("answer").to_pylist()


def test_credentials_are_required_over_tls(secured, tmp_path):
    port, roots = secured
    url = f"grpc+tls://127.0.0.1:{port}"
    assert query(url, roots, username=USER, password=PASSWORD) == [42]
    with pytest.raises(Exception, match="UNAUTHENTICATED"):
        query(url, roots)
    with pytest.raises(Exception, match="UNAUTHENTICATED"):
        query(url, roots, username=USER, password="wrong")
    with pytest.raises(Exception):  # noqa: B017 - plaintext to a TLS port: any transport error will do
        query(f"grpc://127.0.0.1:{port}", None, username=USER, password=PASSWORD)
    with pytest.raises(Exception, match=r"(?i)certificate|handshake|UNAVAILABLE"):  # a CA the client does not trust
        query(url, None, username=USER, password=PASSWORD)
    roots_file = tmp_path / "roots.pem"
    roots_file.write_text(roots)
    env = {**os.environ, "ARROS_FLIGHT_PASSWORD": PASSWORD}
    result = arros_command("query", "--flight", url, "--tls-roots", str(roots_file), "--username", USER,
                           "SELECT 40 + 2 AS answer", "--format", "csv", env=env)
    assert result.returncode == 0 and result.stdout.splitlines() == ['"answer"', "42"], result.stderr
    result = arros_command("query", "--flight", url, "--tls-roots", str(roots_file), "SELECT 1")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "credentials required" in result.stderr


def test_a_port_in_use(tmp_path, caplog):
    """Written in the config, `arros run` stops with one line; the default only warns and runs without it."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "arros.toml"
        config.write_text(f'[embedded]\nlisten = "127.0.0.1:{free_port()}"\n[engine]\nstate_dir = "{tmp_path}"\n'
                          f'[flight]\nlisten = "127.0.0.1:{port}"\n')
        result = arros_command("run", "-c", str(config))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"arros: error: {config}: flight.listen: cannot serve Flight SQL on 127.0.0.1:{port}" in result.stderr

        default = FlightSqlServer(FlightSources(FlightConfig(listen=f"127.0.0.1:{port}"), "<defaults>", tmp_path, None))
        default.start()
        assert default.port is None and "Flight SQL is off: cannot listen on" in caplog.text
        default.stop()
