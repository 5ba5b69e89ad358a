"""`[cluster]` and `[engine] workers`: parsing, what a group refuses, and each worker's own config."""

from __future__ import annotations

import pytest

from arros_mqtt.config import ConfigError, member_name, parse_config
from arros_mqtt.ingress.mqtt_source import shared_filter
from arros_mqtt.service.runtime import build_engine
from arros_mqtt.service.workers import default_group, group_config, worker_config

STREAM = {"topic": "plant/{machine}/t", "schema": {"ts": "timestamp[ms]", "temp": "float64"}, "event_time": "ts"}
FILTER = {"sql": "SELECT machine, temp FROM t WHERE temp > 50", "output": "hot/{machine}"}
WINDOW = {"sql": "SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, avg(temp) AS a FROM t "
                 "GROUP BY window, machine", "output": "avg/{machine}"}
RUNNING = {"sql": "SELECT machine, max(temp) AS m FROM t GROUP BY machine", "output": "max/{machine}"}


def config(cluster=None, subscriptions=None, broker=True, **streams):
    data = {"streams": streams or {"t": STREAM}, "subscriptions": subscriptions or {"hot": FILTER}}
    if cluster is not None:
        data["cluster"] = cluster
    if broker:
        data["broker"] = {"url": "mqtt://127.0.0.1:1883"}
    return parse_config(data, "arros.toml")


def test_group_and_member_parse():
    parsed = config({"group": "site-a", "member": "edge-1"})
    assert parsed.cluster.group == "site-a"
    assert member_name(parsed) == "edge-1"
    assert config().cluster.group is None


def test_member_defaults_to_the_client_id():
    parsed = config({"group": "site-a"})
    assert member_name(parsed) == parsed.broker.client_id


@pytest.mark.parametrize(("cluster", "key", "words"), [
    ({"group": "a/b"}, "cluster.group", "topic level"),
    ({"group": "a+"}, "cluster.group", "topic level"),
    ({"group": ""}, "cluster.group", "invalid group name"),
    ({"member": "m1"}, "cluster.member", "needs group"),
    ({"group": "g", "size": 2}, "cluster.size", "unknown key"),
])
def test_bad_cluster_tables(cluster, key, words):
    with pytest.raises(ConfigError) as caught:
        config(cluster)
    assert caught.value.key == key
    assert words in str(caught.value)


def test_shared_filter():
    assert shared_filter("site-a", "plant/+/t") == "$share/site-a/plant/+/t"
    assert shared_filter(None, "plant/+/t") == "plant/+/t"


def test_embedded_mode_refuses_a_group():
    with pytest.raises(ConfigError) as caught:
        build_engine(config({"group": "g"}, broker=False))
    assert caught.value.key == "cluster.group"
    assert "external broker" in str(caught.value)


@pytest.mark.parametrize("subscription", [WINDOW, RUNNING])
def test_aggregates_are_refused_in_a_group(subscription):
    build_engine(config(subscriptions={"agg": subscription}))  # alone: runs
    with pytest.raises(ConfigError) as caught:
        build_engine(config({"group": "g"}, subscriptions={"agg": subscription}))
    assert caught.value.key == "subscriptions.agg.sql"
    assert "windows and running aggregates in a [cluster] group are not supported yet" in str(caught.value)


def test_filters_and_lookup_joins_run_in_a_group(tmp_path):
    (tmp_path / "machines.csv").write_text("machine,line\nm1,L1\n")
    parsed = parse_config({
        "broker": {"url": "mqtt://127.0.0.1:1883"}, "cluster": {"group": "g"}, "streams": {"t": STREAM},
        "tables": {"machines": {"path": str(tmp_path / "machines.csv")}},
        "subscriptions": {"hot": FILTER, "joined": {
            "sql": "SELECT t.machine, m.line, t.temp FROM t JOIN machines m ON t.machine = m.machine",
            "output": "joined/{machine}"}},
    }, "arros.toml")
    assert set(build_engine(parsed).subscriptions) == {"hot", "joined"}


def test_a_group_needs_declared_schemas_and_no_sparkplug():
    with pytest.raises(ConfigError, match="each member would infer its own schema"):
        build_engine(config({"group": "g"}, t={"topic": "plant/+/t"}))
    with pytest.raises(ConfigError, match="sparkplug streams are not supported"):
        build_engine(config({"group": "g"}, subscriptions={"hot": {"sql": "SELECT metric FROM t", "output": "o"}},
                            t={"topic": "spBv1.0/#", "format": "sparkplug"}))


def test_workers_parse_and_have_a_minimum():
    assert parse_config({"engine": {"workers": 4}}).engine.workers == 4
    with pytest.raises(ConfigError, match="at least 1"):
        parse_config({"engine": {"workers": 0}})


def test_each_worker_has_its_own_state_client_id_and_ports(tmp_path):
    parsed = parse_config({"broker": {"url": "mqtt://127.0.0.1:1883", "client_id": "plant"},
                           "engine": {"state_dir": str(tmp_path / "state"), "workers": 2},
                           "archive": {"dir": str(tmp_path / "archive")},
                           "metrics": {"listen": "127.0.0.1:9108"}, "web": {"listen": "127.0.0.1:8080"},
                           "streams": {"t": STREAM}, "subscriptions": {"hot": FILTER}})
    first, second = worker_config(parsed, 0), worker_config(parsed, 1)
    assert first.cluster.group == second.cluster.group == default_group(parsed)
    assert (first.engine.state_dir, second.engine.state_dir) == (str(tmp_path / "state" / "worker-0"),
                                                                 str(tmp_path / "state" / "worker-1"))
    assert second.archive.dir == str(tmp_path / "archive" / "worker-1")
    assert (first.broker.client_id, second.broker.client_id) == ("plant-w0", "plant-w1")
    assert member_name(first) != member_name(second)
    assert second.flight.listen == "127.0.0.1:31338"
    assert second.metrics.listen == "127.0.0.1:9109"
    assert second.web.listen == "127.0.0.1:8081"
    assert second.engine.workers == 1
    build_engine(second)


def test_workers_keep_a_configured_group():
    parsed = config({"group": "site-a", "member": "edge"})
    assert group_config(parsed).cluster.group == "site-a"
    assert worker_config(parsed, 1).cluster.member == "edge-w1"


def test_a_group_refuses_connectors():
    parsed = parse_config({
        "broker": {"url": "mqtt://127.0.0.1:1883"}, "cluster": {"group": "g"},
        "streams": {"press": {"schema": {"temp": "float64"}}},
        "connectors": {"press1": {"kind": "modbus", "host": "127.0.0.1", "stream": "press",
                                  "registers": [{"name": "temp", "address": 0, "type": "float32"}]}},
        "subscriptions": {"hot": {"sql": "SELECT temp FROM press", "output": "o"}},
    }, "arros.toml")
    with pytest.raises(ConfigError, match="connectors do not run in a \\[cluster\\] group") as caught:
        build_engine(parsed)
    assert caught.value.key == "connectors.press1"
