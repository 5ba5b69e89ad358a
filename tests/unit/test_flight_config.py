"""`[flight]`: on by default on loopback; beyond it a password is required (one line, at `arros check`)."""

from __future__ import annotations

import pytest

from arros_mqtt.cli import main
from arros_mqtt.config import FlightConfig, parse_config
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.flight.sql_info import sql_info_table
from arros_mqtt.vendor import FlightSql_pb2 as sql


def test_defaults_serve_loopback_without_credentials():
    assert parse_config({}).flight == FlightConfig(enabled=True, listen="127.0.0.1:31337", listen_set=False)
    written = parse_config({"flight": {"listen": "[::1]:4000"}}).flight
    assert written.listen_set and written.password is None


@pytest.mark.parametrize(("flight", "message"), [
    ({"listen": "0.0.0.0:31337"}, "flight.listen: 0.0.0.0:31337 is reachable beyond this machine: set username "
                                  "and password (and tls_cert/tls_key), or listen on 127.0.0.1"),
    ({"listen": "box.local:31337"}, "is reachable beyond this machine"),
    ({"username": "u"}, "flight.password: is required with username"),
    ({"tls_key": "k.pem"}, "flight.tls_cert: is required with tls_key"),
    ({"listen": "31337"}, "flight.listen: expected \"host:port\""),
    ({"port": 1}, "flight.port: unknown key"),
])
def test_bad_flight_config_is_one_line(flight, message):
    with pytest.raises(ConfigError) as refused:
        parse_config({"flight": flight})
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_beyond_loopback_is_fine_with_a_password_or_when_off():
    assert parse_config({"flight": {"listen": "0.0.0.0:1", "username": "u", "password": "p"}}).flight.password == "p"
    assert not parse_config({"flight": {"listen": "0.0.0.0:1", "enabled": False}}).flight.enabled


def test_arros_check_refuses_an_open_listen(tmp_path, capsys):
    path = tmp_path / "arros.toml"
    path.write_text('[flight]\nlisten = "0.0.0.0:31337"\n')
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"arros: error: {path}: flight.listen: 0.0.0.0:31337 is reachable") and "\n" not in err


def test_sql_info_answers_what_is_asked():
    asked = [sql.SqlInfo.Value("FLIGHT_SQL_SERVER_READ_ONLY"), sql.SqlInfo.Value("SQL_IDENTIFIER_QUOTE_CHAR"), 99_999]
    assert sql_info_table(asked).to_pylist() == [{"info_name": asked[0], "value": True},
                                                 {"info_name": asked[1], "value": '"'}]
    assert sql_info_table([]).num_rows > 30
