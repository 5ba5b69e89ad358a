"""The `arros` command. Errors print one line (what, where, how to fix) and exit non-zero."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from arros_mqtt import __version__
from arros_mqtt.config import Config, load_config
from arros_mqtt.errors import ArrosError, UserError

log = logging.getLogger("arros")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"arros: error: {exc}", file=sys.stderr)
        return 2
    except ArrosError as exc:
        print(f"arros: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arros", description="Streaming SQL for MQTT telemetry.")
    parser.add_argument("--version", action="version", version=f"arros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the service until Ctrl-C / SIGTERM")
    run.add_argument("-c", "--config", help="config file (TOML); built-in defaults without one")
    run.add_argument("--broker", help="attach to this broker, e.g. mqtt://127.0.0.1:1883 (overrides [broker] url)")
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate a config file and its SQL without connecting")
    check.add_argument("-c", "--config", required=True, help="config file (TOML)")
    check.set_defaults(handler=_check)

    query = commands.add_parser("query", help="read-only SQL over the Parquet archives")
    query.add_argument("sql", help='e.g. "SELECT machine, max(temp) FROM telemetry WHERE date = \'2026-11-25\' '
                       'GROUP BY machine"')
    query.add_argument("-c", "--config", help="config file whose [archive] dir to read (default ./archive)")
    query.add_argument("--dir", help="archive folder (overrides the config's [archive] dir)")
    query.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table",
                       help="output format (json: one object per line)")
    query.add_argument("--output", help="write to this file instead of stdout (required for parquet)")
    query.set_defaults(handler=_query)
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config) if args.config else Config()
    if getattr(args, "broker", None):
        config = config.with_broker_url(args.broker)
    return config


def _check(args: argparse.Namespace) -> int:
    from arros_mqtt.runtime import build_engine

    config = _load(args)
    engine = build_engine(config)
    print(f"{config.source}: OK")
    for stream in config.streams.values():
        columns = ", ".join(f"{f.name} {f.type}" for f in stream.full_schema())
        topic = stream.topic.text if stream.topic else "(connector)"
        print(f"  stream {stream.name}: {topic} [{stream.format}] ({columns})")
    for table in config.tables.values():
        print(f"  table {table.name}: {table.path}")
    for sub in engine.subscriptions.values():
        output = sub.config.output.text if sub.config.output else "(archive only)"
        columns = ", ".join(f"{f.name} {f.type}" for f in sub.shape.output_schema)
        print(f"  subscription {sub.name}: {sub.shape.kind} on {sub.shape.stream} -> {output} ({columns})")
    return 0


def _query(args: argparse.Namespace) -> int:
    from pathlib import Path

    from arros_mqtt.query import run_query, write_result

    root = Path(args.dir or _load(args).archive.dir)
    write_result(run_query(root, args.sql), args.format, args.output)
    return 0


def _run(args: argparse.Namespace) -> int:
    from arros_mqtt.runtime import Service

    service = Service(_load(args))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    while not stop.wait(1.0):
        pass
    log.info("stopping")
    service.stop()
    return 0
