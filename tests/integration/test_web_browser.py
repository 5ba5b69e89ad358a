"""The web console in a real browser: Debian's Chromium driven by selenium (scripts/ensure-chromium.sh
installs both), against the demo's config running in-process on the embedded broker with the device
simulator publishing, plus a `probe` stream the tests publish to themselves."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import duckdb
import orjson
import paho.mqtt.client as mqtt
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from arros_mqtt.config import parse_config
from arros_mqtt.service.runtime import Service
from arros_mqtt.sim.simulator import SimOptions, simulate
from tests.integration.test_web_console import two_free_ports
from tests.support import HOST, publish_all, unique, wait_subscribed

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Chromium as root in a container, quiet: no sandbox (root), no GPU, no calls home
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000")
PROBE = """
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
WAIT = 20.0


def chromium(user_data_dir: Path) -> WebDriver:
    if shutil.which(CHROMIUM) is None or shutil.which(CHROMEDRIVER) is None:
        pytest.fail("Chromium and chromedriver are missing: run scripts/ensure-chromium.sh (make test does)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=DriverService(executable_path=CHROMEDRIVER))


def console_service(tmp: Path, web: str = "") -> tuple[Service, int, str]:
    """The demo's streams and subscriptions plus `probe`, the embedded broker and the console on free ports."""
    prefix = unique("web")
    demo = files("arros_mqtt.sim").joinpath("demo.toml").read_text()
    web_port, mqtt_port = two_free_ports()
    text = demo + PROBE.format(prefix=prefix) + f'[web]\nlisten = "{HOST}:{web_port}"\n{web}'
    config = parse_config(tomllib.loads(text), "test")
    config = replace(config, embedded=replace(config.embedded, listen=f"{HOST}:{mqtt_port}"),
                     engine=replace(config.engine, state_dir=str(tmp / unique("state-"))),
                     archive=replace(config.archive, dir=str(tmp / unique("archive-"))))
    service = Service(config)
    service.start()
    wait_subscribed(service)
    return service, web_port, prefix


def mqtt_port(service: Service) -> int:
    return int(service.config.embedded.listen.rsplit(":", 1)[1])


def eventually(check: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (StaleElementReferenceException, WebDriverException):  # the script redrew it meanwhile
            last = None
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def click(driver: WebDriver, by: str, value: str) -> None:
    """Click, again if the page redrew the element between finding and clicking it."""
    eventually(lambda: driver.find_element(by, value).click() or True, f"a click on {value}")


def table_text(driver: WebDriver, key: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'[data-table="{key}"]').text


@pytest.fixture(scope="module")
def console() -> Iterator[tuple[Service, str, str]]:
    tmp = Path(tempfile.mkdtemp(prefix="arros-web-"))
    service, web_port, prefix = console_service(tmp)
    stop = threading.Event()
    options = SimOptions(broker=f"mqtt://{HOST}:{mqtt_port(service)}", robots=2, agvs=2, cnc=3, rate=2.0, seed=7)
    devices = threading.Thread(target=simulate, args=(options, stop), name="devices", daemon=True)
    devices.start()
    try:
        yield service, f"http://{HOST}:{web_port}", prefix
    finally:
        stop.set()
        devices.join(15)
        service.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    profile = Path(tempfile.mkdtemp(prefix="arros-chromium-"))
    driver = chromium(profile)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def publish_probe(service: Service, prefix: str, rows: list[dict]) -> None:
    publish_all(mqtt_port(service), [(f"{prefix}/probe", orjson.dumps(row)) for row in rows],
                protocol=mqtt.MQTTv311, sync=True)


def test_the_overview_shows_the_demos_streams_and_subscriptions_live(console, browser: WebDriver) -> None:
    _service, url, _prefix = console
    browser.get(url + "/")
    streams = table_text(browser, "streams")
    for name in ("robots", "fleet", "cnc", "probe"):
        assert name in streams
    subscriptions = table_text(browser, "subscriptions")
    for name in ("robot_overheat", "agv_alerts", "cnc_alerts", "cnc_avg_10s", "agv_trips", "cnc_oee", "probe_rows"):
        assert name in subscriptions
    first = int(browser.find_element(By.CSS_SELECTOR, '[data-field="messages_in"]').text)
    eventually(lambda: int(browser.find_element(By.CSS_SELECTOR, '[data-field="messages_in"]').text) > first,
               "the messages-in counter to move without a reload")
    eventually(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-chart] canvas"), "the charts to be drawn")


def test_a_subscriptions_link_opens_its_page_where_a_new_result_appears(console, browser: WebDriver) -> None:
    service, url, prefix = console
    browser.get(url + "/")
    click(browser, By.LINK_TEXT, "probe_rows")
    eventually(lambda: browser.current_url.endswith("/subscriptions/probe_rows"), "the subscription's page")
    assert "FROM probe" in browser.find_element(By.CSS_SELECTOR, "pre.sql").text
    eventually(lambda: int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0) >= 1,
               "the first live update")
    tag = unique("tag")
    publish_probe(service, prefix, [{"tag": tag, "v": 41}])
    eventually(lambda: tag in table_text(browser, "latest"), "the new result in the live table")
    eventually(lambda: browser.find_element(By.CSS_SELECTOR, '[data-field="status.rows_out"]').text not in ("0", ""),
               "rows out to count it")


def test_the_editor_creates_a_subscription_whose_results_show(console, browser: WebDriver) -> None:
    service, url, prefix = console
    name = unique("doubled_")
    browser.get(url + "/editor")
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "sql").send_keys("SELECT tag, v * 2 AS doubled FROM probe")
    browser.find_element(By.ID, "output").send_keys(f"{prefix}/doubled/{{tag}}")
    browser.find_element(By.ID, "op-create").click()
    link = eventually(lambda: browser.find_elements(By.ID, "editor-link"), "the created subscription's link")[0]
    assert name in service.engine.subscriptions
    link.click()
    eventually(lambda: browser.current_url.endswith(f"/subscriptions/{name}"), "its page")
    eventually(lambda: int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0) >= 1,
               "the first live update")
    tag = unique("tag")
    publish_probe(service, prefix, [{"tag": tag, "v": 21}])
    row = eventually(lambda: next((line for line in table_text(browser, "latest").splitlines() if tag in line), None),
                     "its result in the live table")
    assert row.split()[-1] == "42"


def test_a_streams_page_shows_its_latest_rows_and_dead_letters(console, browser: WebDriver) -> None:
    service, url, prefix = console
    browser.get(url + "/")
    click(browser, By.LINK_TEXT, "probe")
    eventually(lambda: browser.current_url.endswith("/streams/probe"), "the stream's page")
    assert "tag" in table_text(browser, "schema") and "int64" in table_text(browser, "schema")
    tag, garbage = unique("row"), unique("not-json-")
    publish_all(mqtt_port(service), [(f"{prefix}/probe", orjson.dumps({"tag": tag, "v": 1})),
                                     (f"{prefix}/probe", garbage.encode())], protocol=mqtt.MQTTv311, sync=True)
    eventually(lambda: tag in table_text(browser, "latest"), "the new row among the latest rows")
    dead = eventually(lambda: next((line for line in table_text(browser, "dead").splitlines() if garbage in line),
                                   None), "the dead letter with its payload")
    assert f"probe {prefix}/probe invalid JSON" in dead  # stream, topic, the decode error, then the payload


def test_bad_sql_is_shown_inline(console, browser: WebDriver) -> None:
    _service, url, prefix = console
    browser.get(url + "/editor")
    browser.find_element(By.ID, "name").send_keys("broken")
    browser.find_element(By.ID, "sql").send_keys("SELECT nope FROM probe")
    browser.find_element(By.ID, "output").send_keys(f"{prefix}/broken")
    browser.find_element(By.ID, "op-create").click()
    error = eventually(lambda: (e := browser.find_element(By.ID, "editor-error")).is_displayed() and e.text,
                       "the error under the editor")
    assert error.startswith("invalid_sql:") and "nope" in error
    assert browser.current_url.endswith("/editor")


def test_a_post_without_the_pages_csrf_token_is_refused(console, browser: WebDriver) -> None:
    _service, url, _prefix = console
    browser.get(url + "/editor")
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch("/api/control", {method: "POST", body: '{"op": "list"}', credentials: "same-origin"})
            .then((r) => done(r.status));""")
    assert status == 403


def test_the_archive_page_lists_and_queries(console, browser: WebDriver) -> None:
    service, url, prefix = console
    publish_probe(service, prefix, [{"tag": "archived", "v": v} for v in range(5)])
    archive = Path(service.config.archive.dir) / "streams" / "probe"
    files = f"{archive}/date=*/hour=*/*.parquet"
    archived = "SELECT sum(v) FROM read_parquet('{}') WHERE tag = 'archived'"
    eventually(lambda: list(archive.glob("date=*/hour=*/*.parquet"))
               and duckdb.sql(archived.format(files)).fetchall()[0][0] == 10, "the probe rows in archive files")
    browser.get(url + "/archives")
    assert "streams.probe" in table_text(browser, "archives")
    query = browser.find_element(By.ID, "query-sql")
    query.clear()
    query.send_keys("SELECT tag, sum(v) AS total FROM streams.probe WHERE tag = 'archived' GROUP BY tag")
    browser.find_element(By.ID, "run-query").click()
    result = eventually(lambda: browser.find_element(By.ID, "query-result").text, "the query's result table")
    assert "archived 10" in result  # as DuckDB read it from the same files
    query.clear()
    query.send_keys("SELECT * FROM nowhere")
    browser.find_element(By.ID, "run-query").click()
    error = eventually(lambda: (e := browser.find_element(By.ID, "query-error")).is_displayed() and e.text,
                       "the query's error")
    assert "nowhere" in error


def test_the_login_is_required_when_a_password_is_configured(browser: WebDriver, tmp_path: Path) -> None:
    service, web_port, _prefix = console_service(tmp_path, 'password = "open-sesame-42"\n')
    url = f"http://{HOST}:{web_port}"
    try:
        browser.get(url + "/subscriptions")
        assert "/login" in browser.current_url
        assert "probe_rows" not in browser.page_source
        browser.find_element(By.ID, "password").send_keys("not it")
        browser.find_element(By.ID, "login").click()
        assert "wrong password" in eventually(lambda: browser.find_element(By.ID, "login-error").text, "the error")
        browser.find_element(By.ID, "password").send_keys("open-sesame-42")
        browser.find_element(By.ID, "login").click()
        eventually(lambda: browser.current_url.endswith("/subscriptions"), "the page asked for")
        assert "probe_rows" in table_text(browser, "subscriptions")
        browser.find_element(By.ID, "logout").click()
        eventually(lambda: "/login" in browser.current_url, "the login page after logging out")
        browser.get(url + "/subscriptions")
        assert "/login" in browser.current_url
    finally:
        service.stop()
