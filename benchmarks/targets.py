"""The performance targets of issue 15, each checked against what one `arros bench` run measured.

Every target is a ratio or a bound measured in the same run (the ceilings are that run's), so a busy
machine moves a target's two sides together. A target whose section did not run is left out; one
whose size did not run (10,000 subscriptions run only in the full suite) is listed with `met` None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

RESULTS_X_RELAY = 0.45  # each result crosses the broker twice: 0.9x of what it carries
INGEST_X_RELAY = 0.9
LATENCY_RATE = 10_000
P99_MS, P999_MS = 10.0, 20.0
ARRAY_ROWS_PER_S = 1_000_000
REPLAY_X_DUCKDB = 2.0
MANY_WINDOWS, MAX_LAG_S = 10_000, 1.0
RSS_IDLE_MB = 120.0


def targets(report: dict) -> list[dict]:
    """[{key, target, measured, met}] for every target this run measured."""
    checks: list[Callable[[dict], Iterator[dict]]] = [_relay_ratios, _arrays, _latency, _replay, _many_windows,
                                                      _rss_idle]
    return [row for check in checks for row in check(report)]


def _row(key: str, target: str, measured: str, met: bool | None) -> dict:
    return {"key": key, "target": target, "measured": measured, "met": None if met is None else bool(met)}


def _loss(run: dict) -> str:
    return "zero loss" if run["zero_loss"] else "LOSS"


def _defaults(report: dict) -> list[dict]:
    """The ingest section's headline runs: the defaults a user gets."""
    return [run for run in report.get("ingest", {}).get("runs", []) if run["group"] == "defaults"]


def _relay_ratios(report: dict) -> Iterator[dict]:
    """Per-row results (outputs/s) and single-reading ingest (msgs/s) as ratios to the QoS 1 relay."""
    relay = report["ingest"]["ceilings"]["qos1"]["msgs_per_s"] if "ingest" in report else 0.0
    for run in _defaults(report):
        if run["query"] == "per-row":
            qos = run["results_qos"]
            key, what, bound = f"per_row_results_qos{qos}", f"per-row results at QoS {qos}", RESULTS_X_RELAY
            rate, unit = run["results_per_s"] or 0.0, "results/s"
        elif run["rows_per_message"] == 1:
            payload, query = run["payload"], run["query"]
            key, what, bound = f"ingest_{payload}_{query}", f"QoS 1 ingest, {payload} into a {query},", INGEST_X_RELAY
            rate, unit = run["msgs_per_s"], "msgs/s"
        else:
            continue
        ratio = run["ratio_to_qos1_ceiling"]
        yield _row(key, f"{what} >= {bound}x the QoS 1 relay ceiling",
                   f"{ratio:.2f}x ({rate:,.0f} {unit} of {relay:,.0f}), {_loss(run)}",
                   ratio >= bound and run["zero_loss"])


def _arrays(report: dict) -> Iterator[dict]:
    for run in _defaults(report):
        if run["query"] in ("filter", "window") and run["rows_per_message"] > 1:
            yield _row(f"arrays_{run['payload']}_{run['query']}",
                       f"{run['payload']} (arrays of {run['rows_per_message']} readings) into a "
                       f"{run['query']} >= {ARRAY_ROWS_PER_S:,} rows/s",
                       f"{run['rows_per_s']:,.0f} rows/s, {_loss(run)}",
                       run["rows_per_s"] >= ARRAY_ROWS_PER_S and run["zero_loss"])


def _latency(report: dict) -> Iterator[dict]:
    for run in report.get("latency", {}).get("runs", []):
        if run["variant"] == "defaults" and run["rate"] == LATENCY_RATE:
            yield _row("latency_defaults_10k",
                       f"latency with the defaults at {LATENCY_RATE:,} msgs/s, one result per row: p99 <= "
                       f"{P99_MS:.0f} ms, p99.9 <= {P999_MS:.0f} ms",
                       f"p99 {run['p99_ms']:.1f} ms, p99.9 {run['p999_ms']:.1f} ms (p50 {run['p50_ms']:.1f}), "
                       f"{'complete' if run['complete'] else 'INCOMPLETE'}",
                       run["p99_ms"] <= P99_MS and run["p999_ms"] <= P999_MS and run["complete"])


def _replay(report: dict) -> Iterator[dict]:
    engine = report.get("replay", {}).get("runs", {}).get("engine")
    if engine:
        yield _row("replay_x_duckdb", f"replay within {REPLAY_X_DUCKDB:.0f}x DuckDB's batch time",
                   f"{engine['x_duckdb_time']:.2f}x (peak RSS {engine['peak_rss_mb']:.0f} MB), "
                   f"{'same rows' if engine['matches_duckdb'] else 'DIFFERENT ROWS'}",
                   engine["x_duckdb_time"] <= REPLAY_X_DUCKDB and engine["matches_duckdb"])


def _many_windows(report: dict) -> Iterator[dict]:
    if "subscriptions" not in report:
        return
    target = f"{MANY_WINDOWS:,} window subscriptions at 1,000 msgs/s: lag < {MAX_LAG_S:.0f} s"
    runs = [run for run in report["subscriptions"]["runs"]
            if run["kind"] == "window" and run["subscriptions"] == MANY_WINDOWS]
    for run in runs:
        yield _row("many_windows_lag", target.replace("1,000", f"{run['rate']:,}"),
                   f"lag {run['lag_s']:.1f} s, {run['cpu_per_s']:.2f} CPU s/s, {_loss(run)}",
                   run["lag_s"] < MAX_LAG_S and run["zero_loss"])
    if not runs:
        yield _row("many_windows_lag", target, "not run (the full suite runs it)", None)


def _rss_idle(report: dict) -> Iterator[dict]:
    runs = _defaults(report)
    if runs:
        largest = max(runs, key=lambda run: run["rss_idle_mb"])
        yield _row("rss_idle", f"RSS idle <= {RSS_IDLE_MB:.0f} MB (the largest of the default rows)",
                   f"{largest['rss_idle_mb']:.0f} MB ({largest['label']} {largest['query']}; smallest "
                   f"{min(run['rss_idle_mb'] for run in runs):.0f} MB)",
                   largest["rss_idle_mb"] <= RSS_IDLE_MB)
