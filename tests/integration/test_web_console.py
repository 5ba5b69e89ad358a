"""The web console over plain HTTP against a running service (embedded broker, free ports): the login
when one is configured, CSRF refusals, the editor's path through the control plane, the archive query
checked against DuckDB over the same files. The browser-driven tests are in test_web_browser.py."""

from __future__ import annotations

import http.client
import re
import socket
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import duckdb
import orjson
import paho.mqtt.client as mqtt
import pytest

from arros_mqtt.config import WEB_DEFAULT_LISTEN, parse_config, parse_listen
from arros_mqtt.service.runtime import Service
from tests.support import HOST, free_port, publish_all, start_arros, stop_process, unique, wait_for_log, wait_subscribed

CONFIG = """
[engine]
batch_max_delay = "20ms"
[archive]
roll_interval = "1s"
[streams.probe]
topic = "{prefix}/probe"
schema = {{ tag = "string", v = "int64" }}
archive = true
[subscriptions.probe_rows]
sql = "SELECT tag, v FROM probe"
output = "{prefix}/out/{{tag}}"
"""


def two_free_ports() -> tuple[int, int]:
    """Two different free ports (`free_port()` twice may return the same one: it is closed in between)."""
    with socket.socket() as one, socket.socket() as two:
        one.bind((HOST, 0))
        two.bind((HOST, 0))
        return one.getsockname()[1], two.getsockname()[1]


def start_service(tmp_path: Path, web: str, port: int | None = None) -> tuple[Service, int, str]:
    prefix = unique("web")
    config = parse_config(tomllib.loads(CONFIG.format(prefix=prefix) + web), "test")
    port = port or free_port()
    config = replace(config, embedded=replace(config.embedded, listen=f"{HOST}:{port}"),
                     engine=replace(config.engine, state_dir=str(tmp_path / "state")),
                     archive=replace(config.archive, dir=str(tmp_path / "archive")))
    service = Service(config)
    service.start()
    wait_subscribed(service)
    return service, port, prefix


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def open_session(port: int, cookie: str | None = None) -> tuple[str, str]:
    """(cookie header, CSRF token) of a page load."""
    status, headers, body = request(port, "GET", "/", headers={"Cookie": cookie} if cookie else {})
    assert status == 200, body[:300]
    cookie = cookie or headers["set-cookie"].split(";", 1)[0]
    csrf = re.search(rb'<meta name=csrf content="([^"]+)"', body).group(1).decode()
    return cookie, csrf


@pytest.fixture()
def open_console(tmp_path: Path):
    web_port, mqtt_port = two_free_ports()
    service, port, prefix = start_service(tmp_path, f'[web]\nlisten = "{HOST}:{web_port}"\n', mqtt_port)
    yield service, web_port, port, prefix
    service.stop()


def test_control_requests_need_the_pages_csrf_token(open_console) -> None:
    _service, web_port, _port, _prefix = open_console
    cookie, csrf = open_session(web_port)
    create = orjson.dumps({"op": "create", "name": "doubled", "sql": "SELECT tag, v * 2 AS d FROM probe",
                           "output": "web/doubled"})
    status, _, body = request(web_port, "POST", "/api/control", create, {"Cookie": cookie})
    assert status == 403 and b"CSRF" in body
    status, _, body = request(web_port, "POST", "/api/control", create,
                              {"Cookie": cookie, "X-CSRF-Token": "forged"})
    assert status == 403
    status, _, body = request(web_port, "POST", "/api/control", create,
                              {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert status == 403
    status, _, body = request(web_port, "POST", "/api/control", create, {"X-CSRF-Token": csrf})  # no session
    assert status == 403
    status, _, body = request(web_port, "POST", "/api/control", create, {"Cookie": cookie, "X-CSRF-Token": csrf})
    reply = orjson.loads(body)
    assert status == 200 and reply["ok"], reply
    assert reply["result"]["kind"] == "per_row"


def test_control_replies_are_the_control_planes(open_console) -> None:
    """The same codes as on the control topic: invalid SQL, a config subscription that may not be dropped,
    an unknown key; each counted by the control plane like an MQTT request."""
    service, web_port, _port, _prefix = open_console
    cookie, csrf = open_session(web_port)
    headers = {"Cookie": cookie, "X-CSRF-Token": csrf}

    def call(payload: dict) -> dict:
        status, _, body = request(web_port, "POST", "/api/control", orjson.dumps(payload), headers)
        assert status == 200
        return orjson.loads(body)

    bad = call({"op": "create", "name": "bad", "sql": "SELEC nope", "output": "web/bad"})
    assert not bad["ok"] and bad["error"]["code"] == "invalid_sql"
    forbidden = call({"op": "drop", "name": "probe_rows"})
    assert forbidden["error"]["code"] == "forbidden"
    unknown = call({"op": "create", "name": "x", "sql": "SELECT v FROM probe", "colour": "red"})
    assert unknown["error"]["code"] == "invalid_request"
    paused = call({"op": "pause", "name": "probe_rows"})
    assert paused["ok"] and paused["result"]["paused"]
    assert "probe_rows" in service.engine.paused
    assert service.control.requests[("create", "invalid_sql")] == 1
    assert service.control.requests[("invalid", "invalid_request")] == 1


def test_archive_query_matches_duckdb(open_console, tmp_path: Path) -> None:
    _service, web_port, port, prefix = open_console
    publish_all(port, [(f"{prefix}/probe", orjson.dumps({"tag": f"t{i % 3}", "v": i})) for i in range(30)],
                protocol=mqtt.MQTTv311, sync=True)
    files = tmp_path / "archive" / "streams" / "probe"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(files.glob("date=*/hour=*/*.parquet")):
        time.sleep(0.2)
    cookie, csrf = open_session(web_port)
    sql = "SELECT tag, count(*) AS n, sum(v) AS total FROM streams.probe GROUP BY tag ORDER BY tag"
    status, _, body = request(web_port, "POST", "/api/query", orjson.dumps({"sql": sql}),
                              {"Cookie": cookie, "X-CSRF-Token": csrf})
    result = orjson.loads(body)
    assert status == 200 and "error" not in result, result
    expected = duckdb.sql(f"SELECT tag, count(*) AS n, sum(v) AS total FROM read_parquet('{files}/*/*/*.parquet') "
                          "GROUP BY tag ORDER BY tag").fetchall()
    assert [tuple(row) for row in result["rows"]] == [tuple(row) for row in expected]
    assert result["columns"] == ["tag", "n", "total"] and set(result["chart"]["series"]) == {"n", "total"}
    status, _, body = request(web_port, "POST", "/api/query", orjson.dumps({"sql": "DROP TABLE probe"}),
                              {"Cookie": cookie, "X-CSRF-Token": csrf})
    assert "error" in orjson.loads(body)
    status, _headers, body = request(web_port, "GET", "/archives", headers={"Cookie": cookie})
    assert status == 200 and b"streams.probe" in body


def test_a_password_is_required_when_configured(tmp_path: Path) -> None:
    web_port, mqtt_port = two_free_ports()
    service, _port, _prefix = start_service(
        tmp_path, f'[web]\nlisten = "{HOST}:{web_port}"\npassword = "s3cret-pass"\n', mqtt_port)
    try:
        status, headers, _ = request(web_port, "GET", "/subscriptions")
        assert status == 303 and headers["location"].startswith("/login")
        status, _, _ = request(web_port, "GET", "/api/data/overview")
        assert status == 401
        status, _, _ = request(web_port, "POST", "/api/control", b'{"op": "list"}')
        assert status == 401
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = request(web_port, "POST", "/login", b"password=wrong", form)
        assert status == 401 and b"wrong password" in body
        status, headers, _ = request(web_port, "POST", "/login", b"password=s3cret-pass&next=/streams", form)
        assert status == 303 and headers["location"] == "/streams"
        cookie = headers["set-cookie"].split(";", 1)[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        status, _, body = request(web_port, "GET", "/api/data/overview", headers={"Cookie": cookie})
        assert status == 200 and orjson.loads(body)["subscriptions"][0]["name"] == "probe_rows"
    finally:
        service.stop()


def test_beyond_loopback_a_token_is_generated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    web_port, mqtt_port = two_free_ports()
    caplog.set_level("INFO")
    service, _port, _prefix = start_service(tmp_path, f'[web]\nlisten = "0.0.0.0:{web_port}"\n', mqtt_port)
    try:
        token = service.web.guard.secret
        assert any(token in record.getMessage() for record in caplog.records)
        status, _, _ = request(web_port, "GET", "/")
        assert status == 303
        status, headers, _ = request(web_port, "GET", f"/login?token={token}")
        assert status == 303
        cookie = headers["set-cookie"].split(";", 1)[0]
        status, _, _ = request(web_port, "GET", "/streams/probe", headers={"Cookie": cookie})
        assert status == 200
    finally:
        service.stop()


def test_rebound_host_names_are_refused_on_loopback(open_console) -> None:
    _service, web_port, _port, _prefix = open_console
    status, _, _ = request(web_port, "GET", "/", headers={"Host": f"attacker.example:{web_port}"})
    assert status == 421
    status, _, body = request(web_port, "GET", "/static/uPlot.iife.min.js")
    assert status == 200 and b"uPlot" in body


def test_the_default_address_taken_means_no_console_not_no_service(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Another program on the default port: the service runs without its console (a warning says so)."""
    host, port = parse_listen(WEB_DEFAULT_LISTEN)
    holder = socket.socket()
    try:
        holder.bind((host, port))
        holder.listen()
    except OSError:
        pass  # another program holds it already: the same situation
    try:
        service, _port, _prefix = start_service(tmp_path, "")
        try:
            assert service.web is None
            assert any("web console not started" in record.getMessage() for record in caplog.records)
        finally:
            service.stop()
    finally:
        holder.close()


def test_arros_run_serves_the_console_and_logs_its_url(tmp_path: Path) -> None:
    web_port, mqtt_port = two_free_ports()
    config = tmp_path / "arros.toml"
    text = CONFIG.format(prefix=unique("web")).replace("[engine]", f'[engine]\nstate_dir = "{tmp_path}/state"')
    text = text.replace("[archive]", f'[archive]\ndir = "{tmp_path}/archive"')
    config.write_text(text + f'[embedded]\nlisten = "{HOST}:{mqtt_port}"\n[web]\nlisten = "{HOST}:{web_port}"\n')
    log = tmp_path / "arros.log"
    process = start_arros("run", "-c", str(config), log=log)
    try:
        wait_for_log(log, f"web console on http://{HOST}:{web_port}/", process=process)
        status, _, body = request(web_port, "GET", "/subscriptions/probe_rows")
        assert status == 200 and b"SELECT tag, v FROM probe" in body
    finally:
        assert stop_process(process) == 0
