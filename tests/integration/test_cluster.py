"""A `[cluster]` group on a real Mosquitto (MQTT 5 shared subscriptions, round robin): 2 and 3 members
share a stream; a filter's and a lookup join's results equal DuckDB's over the input, each exactly once;
a control request reaches every member and each answers with its name; an aggregate is refused."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest

from arros_mqtt.config import BrokerConfig
from arros_mqtt.control.client import ControlClient
from tests.support import (
    Collector,
    arros_command,
    publish_all,
    running_service,
    start_arros,
    stop_process,
    unique,
    wait_for_log,
)

FILTER_SQL = "SELECT machine, seq, temp FROM t WHERE temp > 50"
JOIN_SQL = "SELECT t.machine, m.line, t.seq FROM t JOIN machines m ON t.machine = m.machine WHERE t.seq % 3 = 0"
WINDOW_SQL = ("SELECT tumble(_received_at, INTERVAL '1 second') AS window, machine, count(*) AS n FROM t "
              "GROUP BY window, machine")
MACHINES = "machine,line\nm0,L0\nm1,L1\nm2,L0\nm3,L1\nm4,L0\nm5,L1\n"


def member_config(base: str, url: str, group: str, index: int, state: Path, tables: Path) -> str:
    return f"""
[broker]
url = "{url}"
client_id = "{base}-m{index}"
[cluster]
group = "{group}"
member = "m{index}"
[engine]
state_dir = "{state}"
[flight]
enabled = false
[control]
prefix = "{base}/arros"
status_interval = "0.3s"
[tables.machines]
path = "{tables}"
[streams.t]
topic = "{base}/plant/{{machine}}/t"
schema = {{ seq = "int64", temp = "float64" }}
[subscriptions.hot]
sql = "{FILTER_SQL}"
output = "{base}/hot/{{machine}}"
[subscriptions.joined]
sql = "{JOIN_SQL}"
output = "{base}/joined/{{machine}}"
"""


@contextlib.contextmanager
def group_of(count: int, mosquitto, tmp_path: Path):
    base, group = unique(), unique("g")
    tables = tmp_path / "machines.csv"
    tables.write_text(MACHINES)
    with contextlib.ExitStack() as stack:
        services = [stack.enter_context(running_service(
            member_config(base, mosquitto.url, group, i, tmp_path / f"state-{i}", tables), tmp_path, None))
            for i in range(count)]
        yield base, services


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"machine": f"m{rng.randrange(6)}", "seq": i, "temp": round(rng.uniform(0, 100), 2)} for i in range(n)]


def publish_rows(port: int, base: str, rows: list[dict]) -> None:
    publish_all(port, [(f"{base}/plant/{r['machine']}/t", orjson.dumps({"seq": r["seq"], "temp": r["temp"]}))
                       for r in rows])


def duckdb_rows(rows: list[dict], sql: str, machines: Path) -> list[tuple]:
    """The same SQL over the same rows and the same lookup CSV, in DuckDB."""
    con = duckdb.connect()
    con.register("t", pa.Table.from_pylist(rows))
    con.execute(f"CREATE TABLE machines AS SELECT * FROM read_csv_auto('{machines}')")
    return sorted(tuple(r.values()) for r in con.sql(sql).to_arrow_table().to_pylist())


def results(collector: Collector, count: int) -> list[tuple]:
    return sorted(tuple(orjson.loads(p).values()) for _, p in collector.wait_for(count))


@pytest.mark.parametrize("members", [2, 3])
def test_members_share_a_stream_each_result_exactly_once(mosquitto, tmp_path, members):
    with group_of(members, mosquitto, tmp_path) as (base, services):
        rows, machines = make_rows(900, seed=members), tmp_path / "machines.csv"
        hot = Collector(mosquitto.port, [f"{base}/hot/#"])
        joined = Collector(mosquitto.port, [f"{base}/joined/#"])
        publish_rows(mosquitto.port, base, rows)
        expected_hot, expected_joined = duckdb_rows(rows, FILTER_SQL, machines), \
            duckdb_rows(rows, JOIN_SQL, machines)
        got_hot, got_joined = results(hot, len(expected_hot)), results(joined, len(expected_joined))
        per_member = [service.pipeline.stats["t"].messages for service in services]
        hot.close()
        joined.close()
    assert got_hot == expected_hot  # nothing lost, nothing twice (a duplicate would make it longer)
    assert got_joined == expected_joined
    assert sum(per_member) == len(rows)  # each message reached one member ...
    assert all(count > 0 for count in per_member), per_member  # ... and every member took a share


def test_control_requests_reach_every_member(mosquitto, tmp_path):
    with group_of(2, mosquitto, tmp_path) as (base, _services):
        prefix = f"{base}/arros"
        client = ControlClient(BrokerConfig(url=mosquitto.url), prefix, timeout=10)
        statuses = Collector(mosquitto.port, [f"{prefix}/status/#"])
        sql = "SELECT machine, seq FROM t WHERE seq % 2 = 0"
        created = client.request_all({"op": "create", "name": "even", "sql": sql, "output": f"{base}/even/{{machine}}"})
        assert sorted(r["member"] for r in created.replies) == ["m0", "m1"] and created.missing == []
        assert all(r["ok"] for r in created.replies), created.replies

        even = Collector(mosquitto.port, [f"{base}/even/#"])
        rows = make_rows(400, seed=7)
        publish_rows(mosquitto.port, base, rows)
        expected = duckdb_rows(rows, sql, tmp_path / "machines.csv")
        assert results(even, len(expected)) == expected

        refused = client.request_all({"op": "create", "name": "per_second", "sql": WINDOW_SQL,
                                      "output": f"{base}/agg/{{machine}}"})
        assert sorted(r["member"] for r in refused.replies) == ["m0", "m1"]
        for reply in refused.replies:
            assert reply["ok"] is False and reply["error"]["code"] == "forbidden"
            assert "windows and running aggregates in a [cluster] group are not supported yet" \
                in reply["error"]["message"]

        listed = arros_command("sub", "list", "--members", "--broker", mosquitto.url, "--prefix", prefix)
        assert listed.returncode == 0, listed.stderr
        lines = [line.split() for line in listed.stdout.splitlines()]
        assert lines[0][:2] == ["NAME", "MEMBER"]
        assert Counter(line[0] for line in lines[1:]) == {"even": 2, "hot": 2, "joined": 2}
        assert {line[1] for line in lines[1:]} == {"m0", "m1"}

        status_messages = statuses.wait_for(12, timeout=10)
        assert {f"{prefix}/status/even/m0", f"{prefix}/status/even/m1"} <= {topic for topic, _ in status_messages}
        assert all(orjson.loads(payload)["member"] == topic.rsplit("/", 1)[-1] for topic, payload in status_messages)
        statuses.close()
        even.close()


def test_a_member_announces_itself_and_its_health_and_leaves(mosquitto, tmp_path):
    with group_of(1, mosquitto, tmp_path) as (base, _services):
        presence = Collector(mosquitto.port, [f"{base}/arros/members/+"])
        health = Collector(mosquitto.port, [f"{base}/arros/members/+/health"])  # retained, one per member
        online = orjson.loads(presence.wait_for(1)[0][1])
        assert online["online"] is True and online["member"] == "m0"
        topic, _payload = health.wait_for(1)[0]
        assert topic == f"{base}/arros/members/m0/health"
        health.close()
    after = orjson.loads(presence.wait_for(2)[-1][1])
    presence.close()
    assert after["online"] is False and after["member"] == "m0"


def workers_config(base: str, url: str, state: Path) -> str:
    return f"""
[broker]
url = "{url}"
client_id = "{base}"
[engine]
state_dir = "{state}"
[flight]
enabled = false
[control]
prefix = "{base}/arros"
[streams.t]
topic = "{base}/plant/{{machine}}/t"
schema = {{ seq = "int64", temp = "float64" }}
[subscriptions.hot]
sql = "{FILTER_SQL}"
output = "{base}/hot/{{machine}}"
"""


def online_members(collector: Collector) -> set[str]:
    latest = {topic: orjson.loads(payload) for topic, payload in collector.messages if payload}
    return {p["member"] for p in latest.values() if p["online"]}


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


def worker_pids(log: Path, index: int) -> list[int]:
    return [int(m) for m in re.findall(rf"worker {index} started \(pid (\d+)\)", log.read_text(errors="replace"))]


def test_workers_share_the_stream_restart_and_stop(mosquitto, tmp_path):
    base, log = unique(), tmp_path / "arros.log"
    config = tmp_path / "arros.toml"
    config.write_text(workers_config(base, mosquitto.url, tmp_path / "state"))
    presence = Collector(mosquitto.port, [f"{base}/arros/members/+"])
    hot = Collector(mosquitto.port, [f"{base}/hot/#"])
    parent = start_arros("run", "-c", str(config), "--workers", "2", log=log)
    try:
        wait_until(lambda: online_members(presence) == {f"{base}-w0", f"{base}-w1"})
        wait_for_log(log, "worker-1] arros_mqtt.service.runtime: arros running", process=parent)
        wait_for_log(log, "worker-0] arros_mqtt.service.runtime: arros running", process=parent)
        rows = make_rows(600, seed=11)
        publish_rows(mosquitto.port, base, rows)
        (tmp_path / "machines.csv").write_text(MACHINES)
        expected = duckdb_rows(rows, FILTER_SQL, tmp_path / "machines.csv")
        assert results(hot, len(expected)) == expected
        assert (tmp_path / "state" / "worker-0").is_dir() and (tmp_path / "state" / "worker-1").is_dir()

        (first,) = worker_pids(log, 1)
        os.kill(first, signal.SIGKILL)  # the supervisor starts it again
        wait_until(lambda: len(worker_pids(log, 1)) == 2)
        wait_for_log(log, "exited with signal SIGKILL", process=parent)
        assert parent.poll() is None
    finally:
        code = stop_process(parent, timeout=60)
    assert code == 0, log.read_text()[-3000:]
    children = worker_pids(log, 0) + worker_pids(log, 1)
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    wait_until(lambda: online_members(presence) == set(), timeout=10)
    assert "all 2 workers stopped" in log.read_text()
    presence.close()
    hot.close()


def test_workers_refuse_embedded_mode_and_aggregates(tmp_path):
    config = tmp_path / "arros.toml"
    config.write_text('[streams.t]\ntopic = "p/{machine}/t"\nschema = { seq = "int64" }\n'
                      '[subscriptions.hot]\nsql = "SELECT machine FROM t"\noutput = "o/{machine}"\n')
    embedded = arros_command("run", "-c", str(config), "--workers", "2", timeout=60)
    assert embedded.returncode == 2  # a config error
    assert embedded.stderr.strip().splitlines()[-1].endswith("embedded mode runs one process)")
    config.write_text(config.read_text().replace('"SELECT machine FROM t"', '"SELECT machine, count(*) AS n '
                                                 'FROM t GROUP BY machine"'))
    aggregate = arros_command("run", "-c", str(config), "--workers", "2", "--broker", "mqtt://127.0.0.1:1",
                              timeout=60)
    assert aggregate.returncode == 2
    assert "subscriptions.hot.sql: windows and running aggregates in a [cluster] group are not supported yet" \
        in aggregate.stderr


def test_check_names_the_group_and_member(tmp_path):
    config = tmp_path / "arros.toml"
    config.write_text('[broker]\nurl = "mqtt://127.0.0.1:1"\n[cluster]\ngroup = "site-a"\nmember = "edge-1"\n'
                      '[streams.t]\ntopic = "p/{machine}/t"\nschema = { seq = "int64" }\n'
                      '[subscriptions.hot]\nsql = "SELECT machine, seq FROM t"\noutput = "o/{machine}"\n')
    checked = arros_command("check", "-c", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "  cluster group site-a: member edge-1, streams subscribed as $share/site-a/..." in checked.stdout


def test_joining_a_group_with_the_session_of_a_lone_instance_drops_its_unshared_subscription(mosquitto, tmp_path):
    base, group = unique(), unique("g")
    tables = tmp_path / "machines.csv"
    tables.write_text(MACHINES)
    lone = member_config(base, mosquitto.url, group, 0, tmp_path / "state-0", tables)
    lone = lone.replace(f'[cluster]\ngroup = "{group}"\nmember = "m0"\n', "")
    with running_service(lone, tmp_path, None):
        pass  # its persistent session keeps the unshared filter
    with contextlib.ExitStack() as stack:
        services = [stack.enter_context(running_service(
            member_config(base, mosquitto.url, group, i, tmp_path / f"state-{i}", tables), tmp_path, None))
            for i in range(2)]
        hot = Collector(mosquitto.port, [f"{base}/hot/#"])
        rows = make_rows(400, seed=5)
        publish_rows(mosquitto.port, base, rows)
        expected = duckdb_rows(rows, FILTER_SQL, tables)
        got = results(hot, len(expected))
        per_member = [service.pipeline.stats["t"].messages for service in services]
        hot.close()
    assert got == expected
    assert sum(per_member) == len(rows), per_member


def test_a_member_that_joins_later_takes_the_groups_run_time_subscriptions(mosquitto, tmp_path):
    base, group = unique(), unique("g")
    tables = tmp_path / "machines.csv"
    tables.write_text(MACHINES)
    sql = "SELECT machine, seq FROM t WHERE seq % 5 = 0"
    with contextlib.ExitStack() as stack:
        first = [stack.enter_context(running_service(
            member_config(base, mosquitto.url, group, i, tmp_path / f"state-{i}", tables), tmp_path, None))
            for i in range(2)]
        client = ControlClient(BrokerConfig(url=mosquitto.url), f"{base}/arros", timeout=10)
        created = client.request_all({"op": "create", "name": "fifth", "sql": sql,
                                      "output": f"{base}/fifth/{{machine}}"})
        assert [r["ok"] for r in created.replies] == [True, True]
        late = stack.enter_context(running_service(
            member_config(base, mosquitto.url, group, 2, tmp_path / "state-2", tables), tmp_path, None))
        wait_until(lambda: "fifth" in late.engine.subscriptions, timeout=10)
        assert late.control.store.entries["fifth"].definition["sql"] == sql  # stored: it survives a restart

        fifth = Collector(mosquitto.port, [f"{base}/fifth/#"])
        rows = make_rows(600, seed=9)
        publish_rows(mosquitto.port, base, rows)
        expected = duckdb_rows(rows, sql, tables)
        got = results(fifth, len(expected))
        per_member = [service.pipeline.stats["t"].messages for service in [*first, late]]
        fifth.close()
    assert got == expected  # the late member's share of "fifth" is not missing
    assert all(count > 0 for count in per_member), per_member


def alive(pid: int) -> bool:
    """Running (a zombie that nobody reaped yet counts as gone)."""
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "zombie" not in state


def test_workers_stop_by_themselves_when_the_supervisor_is_killed(mosquitto, tmp_path):
    base, log = unique(), tmp_path / "arros.log"
    config = tmp_path / "arros.toml"
    config.write_text(workers_config(base, mosquitto.url, tmp_path / "state"))
    parent = start_arros("run", "-c", str(config), "--workers", "2", log=log)
    try:
        for index in (0, 1):
            wait_for_log(log, f"worker-{index}] arros_mqtt.service.runtime: arros running", process=parent)
        children = worker_pids(log, 0) + worker_pids(log, 1)
        parent.kill()
        parent.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in children), timeout=30)
    finally:
        for pid in worker_pids(log, 0) + worker_pids(log, 1):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert "the supervising process is gone; stopping" in log.read_text()
