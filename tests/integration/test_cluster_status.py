"""A group's merged statuses, on a real Mosquitto with two `arros run` processes and the real `arros sub` CLI:
after N rows, `arros sub list` shows each subscription once with MEMBERS 2 and ROWS_IN summing to the rows
published (as counted by a plain subscriber of the input topics); `--members` shows each member's share,
summing to N; `arros sub status` shows both; after a kill -9 of one member the list marks it offline and keeps
its last retained counters; a dropped subscription's retained statuses are cleared."""

from __future__ import annotations

import contextlib
import signal

import orjson

from tests.integration.test_cluster import (
    FILTER_SQL,
    MACHINES,
    Collector,
    duckdb_rows,
    make_rows,
    member_config,
    online_members,
    publish_rows,
    results,
    wait_until,
)
from tests.support import arros_command, start_arros, stop_process, unique, wait_for_log


def table(stdout: str) -> list[dict[str, str]]:
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    return [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]


def sub(url: str, prefix: str, *args: str) -> tuple[int, str, str]:
    done = arros_command("sub", *args, "--broker", url, "--prefix", prefix, "--timeout", "10")
    return done.returncode, done.stdout, done.stderr


def test_list_merges_the_members_and_marks_a_killed_one_offline(mosquitto, tmp_path):
    base, group = unique(), unique("g")
    prefix = f"{base}/arros"
    tables = tmp_path / "machines.csv"
    tables.write_text(MACHINES)
    presence = Collector(mosquitto.port, [f"{prefix}/members/+"])
    statuses = Collector(mosquitto.port, [f"{prefix}/status/+/+"])
    published = Collector(mosquitto.port, [f"{base}/plant/+/t"])  # not shared: every row the broker took
    hot = Collector(mosquitto.port, [f"{base}/hot/#"])
    with contextlib.ExitStack() as stack:
        processes = []
        for i in range(2):
            config = tmp_path / f"m{i}.toml"
            config.write_text(member_config(base, mosquitto.url, group, i, tmp_path / f"state-{i}", tables))
            log = tmp_path / f"m{i}.log"
            process = start_arros("run", "-c", str(config), log=log)
            stack.callback(stop_process, process, signal.SIGKILL if i == 1 else signal.SIGTERM, 30)
            wait_for_log(log, "arros running", process=process)
            processes.append(process)
        wait_until(lambda: online_members(presence) == {"m0", "m1"})

        rows = make_rows(700, seed=23)
        publish_rows(mosquitto.port, base, rows)
        assert len(published.wait_for(len(rows))) == len(rows)
        expected = duckdb_rows(rows, FILTER_SQL, tables)
        assert results(hot, len(expected)) == expected  # every row processed, each result once

        def merged_hot() -> dict[str, str]:
            code, out, err = sub(mosquitto.url, prefix, "list")
            assert code == 0, err
            return next(r for r in table(out) if r["NAME"] == "hot")

        wait_until(lambda: merged_hot()["ROWS_IN"] == str(len(rows)), timeout=20)
        code, out, err = sub(mosquitto.url, prefix, "list")
        listed = table(out)
        assert sorted(r["NAME"] for r in listed) == ["hot", "joined"]  # one row per subscription
        row = next(r for r in listed if r["NAME"] == "hot")
        assert (row["MEMBERS"], row["WHERE"], row["STATE"]) == ("2", "m0,m1", "running")
        assert int(row["ROWS_IN"]) == len(published.messages) == len(rows)
        assert int(row["ROWS_OUT"]) == len(expected)

        code, out, err = sub(mosquitto.url, prefix, "list", "--members")
        assert code == 0, err
        shares = {r["MEMBER"]: int(r["ROWS_IN"]) for r in table(out) if r["NAME"] == "hot"}
        assert sorted(shares) == ["m0", "m1"] and all(n > 0 for n in shares.values()), shares
        assert sum(shares.values()) == len(rows)
        outs = {r["MEMBER"]: int(r["ROWS_OUT"]) for r in table(out) if r["NAME"] == "hot"}
        assert sum(outs.values()) == len(expected)

        code, out, err = sub(mosquitto.url, prefix, "status", "hot")
        assert code == 0, err
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line and " " not in line.split(":")[0])
        assert fields["rows_in"].strip() == str(len(rows)) and fields["members"].strip() == "m0, m1"
        assert fields["state"].strip() == "running"
        assert [line.split()[:3] for line in out.splitlines() if line.startswith(("m0 ", "m1 "))] == \
            [["m0", "running", str(shares["m0"])], ["m1", "running", str(shares["m1"])]]

        def retained_share_of_m1() -> int | None:  # m1's last status, as a reader sees it after m1 is gone
            latest = [orjson.loads(p) for t, p in statuses.messages if t == f"{prefix}/status/hot/m1" and p]
            return latest[-1]["rows_in"] if latest else None

        wait_until(lambda: retained_share_of_m1() == shares["m1"], timeout=10)
        stop_process(processes[1], signal.SIGKILL)
        wait_until(lambda: online_members(presence) == {"m0"})

        code, out, err = sub(mosquitto.url, prefix, "list")
        assert code == 0, err  # an offline member is not waited for
        row = next(r for r in table(out) if r["NAME"] == "hot")
        assert (row["MEMBERS"], row["WHERE"], row["STATE"]) == ("1", "m0,m1(offline)", "running")
        assert int(row["ROWS_IN"]) == len(rows)  # m1's share from its last retained status
        code, out, err = sub(mosquitto.url, prefix, "list", "--members")
        states = {r["MEMBER"]: (r["STATE"], int(r["ROWS_IN"])) for r in table(out) if r["NAME"] == "hot"}
        assert states == {"m0": ("running", shares["m0"]), "m1": ("offline", shares["m1"])}

        code, out, err = sub(mosquitto.url, prefix, "create", "tmp", "--sql", "SELECT machine FROM t",
                             "--output", f"{base}/tmp/{{machine}}")
        assert code == 0, err
        wait_until(lambda: any(t == f"{prefix}/status/tmp/m0" and p for t, p in statuses.messages), timeout=10)
        code, out, err = sub(mosquitto.url, prefix, "drop", "tmp")
        assert code == 0, err
        wait_until(lambda: (f"{prefix}/status/tmp/m0", b"") in statuses.messages, timeout=10)
        late = Collector(mosquitto.port, [f"{prefix}/status/+/+"])  # what a reader arriving now gets retained
        retained = {t for t, p in late.wait_for(3, timeout=3) if p}
        assert f"{prefix}/status/tmp/m0" not in retained and f"{prefix}/status/hot/m1" in retained
        late.close()
    for collector in (presence, statuses, published, hot):
        collector.close()
