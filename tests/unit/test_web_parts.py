"""The web console's parts that need no socket: the [web] table, who may log in, CSRF and Host checks,
escaping of rendered values, rates from counters, table cells."""

from __future__ import annotations

import pyarrow as pa
import pytest

from arros_mqtt.config import WEB_DEFAULT_LISTEN, parse_config
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.web import pages
from arros_mqtt.web.auth import Guard, is_loopback
from arros_mqtt.web.data import chart_of, numeric_means, table_data
from arros_mqtt.web.sampler import Series


def test_web_defaults_to_loopback_8080_and_on() -> None:
    web = parse_config({}).web
    assert web.enabled and web.listen is None and web.address == WEB_DEFAULT_LISTEN == "127.0.0.1:8080"
    web = parse_config({"web": {"listen": "0.0.0.0:9000", "password": "pw", "enabled": False}}).web
    assert (web.address, web.password, web.enabled) == ("0.0.0.0:9000", "pw", False)


@pytest.mark.parametrize(("table", "key"), [
    ({"listen": "8080"}, "web.listen"),
    ({"password": ""}, "web.password"),
    ({"enabled": "yes"}, "web.enabled"),
    ({"port": 1}, "web.port"),
])
def test_bad_web_tables_name_the_key(table: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"web": table}, "arros.toml")
    assert caught.value.key == key


def test_loopback_is_open_unless_a_password_is_set() -> None:
    open_guard = Guard("127.0.0.1", None)
    assert not open_guard.login_required and open_guard.allowed(None)
    with_password = Guard("127.0.0.1", "pw")
    assert with_password.login_required and not with_password.token_generated
    assert not with_password.allowed(with_password.new_session(logged_in=False))
    assert with_password.allowed(with_password.new_session(logged_in=True))
    assert with_password.check_secret("pw") and not with_password.check_secret("pW")


def test_beyond_loopback_a_token_is_generated() -> None:
    guard = Guard("0.0.0.0", None)
    assert guard.login_required and guard.token_generated and len(guard.secret) >= 24
    assert Guard("0.0.0.0", None).secret != guard.secret
    assert not guard.allowed(None)


def test_csrf_tokens_are_per_session() -> None:
    guard = Guard("127.0.0.1", None)
    one, two = guard.new_session(False), guard.new_session(False)
    assert guard.csrf_ok(one, one.csrf) and not guard.csrf_ok(one, two.csrf)
    assert not guard.csrf_ok(one, None) and not guard.csrf_ok(None, one.csrf)
    guard.end(one.id)
    assert guard.session(one.id) is None and guard.session(two.id) == two


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:8080", True), ("localhost:8080", True), ("[::1]:8080", True), ("127.0.0.1", True),
    ("evil.example:8080", False), ("10.0.0.5:8080", False), (None, False),
])
def test_loopback_consoles_answer_loopback_host_names_only(host: str | None, ok: bool) -> None:
    assert Guard("127.0.0.1", None).host_ok(host) is ok
    assert Guard("0.0.0.0", None).host_ok(host)  # beyond loopback the login protects it


def test_loopback_names() -> None:
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.1") and not is_loopback("example.com")


def test_rendered_values_are_escaped() -> None:
    html = pages.table("t", {"columns": ["<b>"], "rows": [["<script>alert(1)</script>"]]})
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    html = pages.table("subs", [{"name": 'x"><img>'}], ("name",), {"name": "/subscriptions/"})
    assert '"><img>' not in html
    page = pages.layout("<T>", "", csrf='"tok', events="/events/x")
    assert "<title>&lt;T&gt;" in page and 'content="&quot;tok"' in page


def test_rates_come_from_counter_differences() -> None:
    series = Series()
    series.add("in", 100, 0.0, 1)
    series.add("in", 150, 0.5, 2)
    series.add("in", 150, 1.0, 3)
    assert list(series.rates["in"]) == [None, 100.0, 0.0]
    series.add("new", 5, 1.0, 4)  # appeared later: no history before it
    assert list(series.rates["new"]) == [None, None, None, None]
    series.keep_only({"in"})
    assert set(series.rates) == {"in"}


def test_table_cells_and_charts() -> None:
    ts = pa.array([2_000, 1_000, None], pa.timestamp("ms", tz="UTC"))
    window = pa.StructArray.from_arrays([pa.array([0, 0], pa.timestamp("ms", tz="UTC")),
                                         pa.array([10_000, 10_000], pa.timestamp("ms", tz="UTC"))],
                                        names=["start", "end"])
    data = table_data(pa.table({"window": window, "raw": pa.array([b"\xffx", b"ok"])}))
    assert data["rows"][0] == ["1970-01-01T00:00:00.000Z – 00:00:10.000Z", "\ufffdx"]
    chart = chart_of(pa.table({"ts": ts, "v": [2.0, 1.0, 3.0], "s": ["a", "b", "c"]}))
    assert chart == {"x": [1.0, 2.0], "time": True, "series": {"v": [1.0, 2.0]}}
    assert numeric_means(pa.table({"a": [1, 3], "b": ["x", "y"], "c": [None, 2.5]})) == {"a": 2.0, "c": 2.5}
