"""Flight SQL: an archive scan and a GROUP BY through `arros run`'s Flight SQL endpoint to an ADBC client,
against DuckDB reading the same Parquet files in this process.

The archive (`--rows`, default 10M, in hourly partitions of 1M-row files) is written first; `arros run`
serves it in a child process (no streams, so it only serves), watched from outside for its RSS while it
streams. Time to first batch is from `execute` to the first record batch in the client's hands; rows/s is
archive rows read per second of the whole call (the scan's result rows, the GROUP BY's input rows). Both
results are checked against DuckDB's (row count and a checksum).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import free_port, wait_for_port  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.arros_process import ArrosProcess  # noqa: E402

FILE_ROWS = 1_000_000
SCAN = "SELECT ts, machine, temp, seq FROM {}"
GROUP_BY = "SELECT machine, count(*) AS n, avg(temp) AS mean, max(temp) AS hottest FROM {} GROUP BY machine"
QUERIES = {"scan": SCAN, "group by": GROUP_BY}


def write_archive(root: Path, rows: int) -> Path:
    """`rows` of stream `telemetry` (1,000 machines) as the archive lays them out, one file per hour."""
    base_ms = 1_764_000_000_000 - 1_764_000_000_000 % 3_600_000
    for start in range(0, rows, FILE_ROWS):
        n = min(FILE_ROWS, rows - start)
        hour = start // FILE_ROWS
        folder = root / "streams" / "telemetry" / f"date=2025-11-{24 + hour // 24:02d}" / f"hour={hour % 24:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        seq = pa.array(range(start, start + n), pa.int64())
        table = pa.table({
            "ts": pc.add(pc.multiply(pc.subtract(seq, start), 3), base_ms + hour * 3_600_000).cast(pa.timestamp("ms")),
            "machine": pc.binary_join_element_wise("m", pc.cast(pc.bit_wise_and(seq, 1023), pa.string()), ""),
            "temp": pc.add(pc.divide(pc.cast(pc.bit_wise_and(seq, 4095), pa.float64()), 40.0), 20.0),
            "seq": seq,
        })
        pq.write_table(table, folder / f"part-{start:012d}.parquet", compression="zstd", row_group_size=128 * 1024)
    return root / "streams" / "telemetry"


def through_flight(port: int, sql: str, arros: ArrosProcess) -> dict:
    """The query from an ADBC client, batch by batch; the service's peak RSS sampled meanwhile."""
    import adbc_driver_flightsql.dbapi as flight_sql

    peak, done = [arros.rss_mb()], threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], arros.rss_mb())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with flight_sql.connect(f"grpc://127.0.0.1:{port}", autocommit=True) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        rows, first, checksum = 0, None, 0
        for batch in reader:
            first = first if first is not None else time.perf_counter() - started
            rows += batch.num_rows
            checksum += _checksum(batch)
        seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    return {"rows": rows, "seconds": seconds, "first_batch_s": first, "service_peak_rss_mb": peak[0],
            "checksum": checksum}


def with_duckdb(folder: Path, sql: str) -> dict:
    import duckdb

    con = duckdb.connect()
    source = f"read_parquet('{folder}/**/*.parquet', hive_partitioning = true)"
    started = time.perf_counter()
    reader = con.sql(sql.format(source)).to_arrow_reader(128 * 1024)
    rows, first, checksum = 0, None, 0
    for batch in reader:
        first = first if first is not None else time.perf_counter() - started
        rows += batch.num_rows
        checksum += _checksum(batch)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "first_batch_s": first, "checksum": checksum}


def _checksum(batch: pa.RecordBatch) -> int:
    """Order-free: the sum of `seq` for the scan, of `n` for the GROUP BY."""
    column = "seq" if "seq" in batch.schema.names else "n"
    return int(pc.sum(batch.column(column)).as_py() or 0)


def run(rows: int, progress=report.progress, directory: Path | None = None) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="arros-flight-", dir=directory) as tmp:
        root = Path(tmp)
        progress(f"writing a {rows:,}-row archive")
        folder = write_archive(root / "archive", rows)
        port, broker, metrics = free_port(), free_port(), free_port()
        config = (f'[embedded]\nlisten = "127.0.0.1:{broker}"\n[engine]\nstate_dir = "{root / "state"}"\n'
                  f'[archive]\ndir = "{root / "archive"}"\n[metrics]\nlisten = "127.0.0.1:{metrics}"\n'
                  f'[flight]\nlisten = "127.0.0.1:{port}"\n')
        arros = ArrosProcess(root, config, metrics)
        try:
            wait_for_port(port, 120)
            time.sleep(0.5)
            idle = arros.rss_mb()
            result = {"rows": rows, "service_idle_rss_mb": idle, "queries": {}}
            for name, sql in QUERIES.items():
                progress(f"{name}: DuckDB locally, then through Flight SQL")
                duck = with_duckdb(folder, sql)
                flight = through_flight(port, sql.format("telemetry"), arros)
                flight["matches_duckdb"] = (flight["rows"], flight["checksum"]) == (duck["rows"], duck["checksum"])
                for run_ in (duck, flight):
                    run_["archive_rows_per_s"] = rows / run_["seconds"]
                result["queries"][name] = {"duckdb": duck, "flight": flight}
        finally:
            arros.stop()
    result["ok"] = all(q["flight"]["matches_duckdb"] for q in result["queries"].values())
    return result


def print_table(result: dict) -> None:
    print(f"{result['rows']:,}-row archive; service RSS idle {result['service_idle_rss_mb']:.0f} MB")
    print(f"{'query':<10}{'reader':<22}{'result rows':>12}{'seconds':>9}{'M rows/s':>10}{'1st batch ms':>14}"
          f"{'service RSS MB':>16}  same as DuckDB")
    for name, runs in result["queries"].items():
        for label, key in (("DuckDB, local files", "duckdb"), ("Flight SQL -> ADBC", "flight")):
            r = runs[key]
            rss = f"{r['service_peak_rss_mb']:.0f}" if "service_peak_rss_mb" in r else "-"
            print(f"{name:<10}{label:<22}{r['rows']:>12,}{r['seconds']:>9.2f}{r['archive_rows_per_s'] / 1e6:>10.2f}"
                  f"{r['first_batch_s'] * 1000:>14.0f}{rss:>16}  {r.get('matches_duckdb', '-')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.rows)
    return report.finish(result, print_table, args.json, result["ok"])


if __name__ == "__main__":
    raise SystemExit(main())
