"""`arros bench`: runs the benchmark suite of a source checkout (`benchmarks/suite.py`).

The suite drives real processes (Mosquitto, `arros run`, `mosquitto_sub`, DuckDB) and lives beside the
package rather than in it; an installed wheel without the checkout says so instead of failing later.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from arros_mqtt.errors import UserError

CHECKOUT = Path(__file__).resolve().parent.parent
SUITE = CHECKOUT / "benchmarks" / "suite.py"
SECTIONS = ("ingest", "latency", "memory", "subscriptions", "replay")


def add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="the benchmark suite: ingest vs the broker's ceiling, latency, "
                                "memory, many subscriptions, replay vs DuckDB")
    add_arguments(bench)
    bench.set_defaults(handler=_bench)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute (CI, smoke test)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--duration", type=float, help="seconds of the memory run (default 60; 8 with --quick)")
    parser.add_argument("--messages", type=int, help="messages per ingest run (default 500,000; 20,000 with --quick)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of: {', '.join(SECTIONS)}")


def _bench(args: argparse.Namespace) -> int:
    if not SUITE.exists():
        raise UserError(f"arros bench runs from a source checkout: {SUITE} not found "
                        "(git clone the project, then `make bench`)")
    for tool in ("mosquitto_sub",):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} not found: apt-get install mosquitto mosquitto-clients (or `make mosquitto`)")
    sys.path.insert(0, str(CHECKOUT))
    from benchmarks.suite import main_with

    try:
        return main_with(args)
    except ValueError as exc:
        raise UserError(str(exc)) from None
