"""The `arros` command. Errors print one line (what, where, how to fix) and exit non-zero."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from arros_mqtt import __version__
from arros_mqtt.config import Config, load_config
from arros_mqtt.control.cli import add_sub_command
from arros_mqtt.core.errors import ArrosError, ConfigError, UserError

log = logging.getLogger("arros")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
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
    run.add_argument("--workers", type=_positive, metavar="N", help="run N member processes of one [cluster] group "
                     "on this machine, supervised (overrides [engine] workers; docs/cluster.md)")
    run.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor for its children
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate a config file and its SQL without connecting")
    check.add_argument("-c", "--config", required=True, help="config file (TOML)")
    check.set_defaults(handler=_check)

    query = commands.add_parser("query", help="read-only SQL over the Parquet archives")
    query.add_argument("sql", help='e.g. "SELECT machine, max(temp) FROM telemetry WHERE date = \'2026-11-25\' '
                       'GROUP BY machine"')
    query.add_argument("-c", "--config", help="config file whose [archive] dir to read (default ./archive)")
    query.add_argument("--dir", help="archive folder (overrides the config's [archive] dir)")
    query.add_argument("--archive", metavar="URL", help="read the uploaded archive at s3://, gs:// or "
                       "az://bucket/prefix instead (endpoint_override and credentials from the config's [archive] "
                       "or the environment)")
    query.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table",
                       help="output format (json: one object per line)")
    query.add_argument("--output", help="write to this file instead of stdout (required for parquet)")
    query.add_argument("--flight", metavar="URL", help="ask a running service's Flight SQL endpoint instead, e.g. "
                       "grpc://127.0.0.1:31337 (its live.* and system.* tables too; docs/flight.md)")
    query.add_argument("--username", help="with --flight: log in as this user (password from $ARROS_FLIGHT_PASSWORD)")
    query.add_argument("--tls-roots", metavar="PEM", help="with --flight grpc+tls://: trust these CA certificates")
    query.set_defaults(handler=_query)

    connector = commands.add_parser("connector", help="run one connector alone, publishing its readings to its "
                                    "output topic (a gateway box)")
    connector.add_argument("name", help="the connector's name ([connectors.NAME])")
    connector.add_argument("-c", "--config", required=True, help="config file (TOML)")
    connector.add_argument("--broker", help="publish to this broker, e.g. mqtt://10.0.0.5:1883")
    connector.set_defaults(handler=_connector)

    add_sub_command(commands)

    from arros_mqtt.sim.cli import add_demo_command, add_simulate_command

    add_demo_command(commands)
    add_simulate_command(commands)
    commands.add_parser("bench", add_help=False, help="the benchmark suite of a source checkout (`arros bench "
                        "--help` for its options)").set_defaults(handler=_bench, passes_arguments=True)
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config) if args.config else Config()
    if getattr(args, "broker", None):
        config = config.with_broker_url(args.broker)
    return config


def _check(args: argparse.Namespace) -> int:
    from arros_mqtt.service.runtime import build_engine

    config = _load(args)
    engine = build_engine(config)
    print(f"{config.source}: OK")
    if config.cluster.group is not None:
        from arros_mqtt.config import member_name

        print(f"  cluster group {config.cluster.group}: member {member_name(config)}, streams subscribed as "
              f"$share/{config.cluster.group}/...")
    for stream in config.streams.values():
        columns = ", ".join(f"{f.name} {f.type}" for f in stream.full_schema())
        if stream.infers_schema:
            known = f"_measurement string, _time timestamp[{stream.precision}, tz=UTC], " \
                if stream.format == "influx" else ""
            columns = f"{known}<columns inferred at run time from the first micro-batch>, {columns}"
        topic = stream.topic.text if stream.topic else "(connector)"
        print(f"  stream {stream.name}: {topic} [{stream.format}] ({columns})")
    for table in config.tables.values():
        print(f"  table {table.name}: {table.path}")
    for connector in config.connectors.values():
        from arros_mqtt.core.connector_kinds import load_kind

        target = " and ".join(t for t in (connector.stream and f"stream {connector.stream}",
                                          connector.output and f"topic {connector.output}") if t)
        print(f"  connector {connector.name}: {load_kind(connector.kind).describe(connector.options)} -> {target}")
    for sub in engine.subscriptions.values():
        output = sub.config.output.text if sub.config.output else "(archive only)"
        columns = ", ".join(f"{f.name} {f.type}" for f in sub.shape.output_schema)
        print(f"  subscription {sub.name}: {sub.describe()} on {sub.shape.stream} -> {output} ({columns})")
    for sub_config in engine.pending.values():
        output = sub_config.output.text if sub_config.output else "(archive only)"
        print(f"  subscription {sub_config.name}: pending -> {output} (planned at run time, once the schema of "
              "the stream it reads is inferred; its SQL is checked then)")
    return 0


def _query(args: argparse.Namespace) -> int:
    from pathlib import Path

    from arros_mqtt.query import run_query
    from arros_mqtt.query.output import write_result

    if args.flight:
        from arros_mqtt.flight.client import flight_query

        try:
            roots = Path(args.tls_roots).read_bytes() if args.tls_roots else None
        except OSError as exc:
            raise UserError(f"cannot read --tls-roots {args.tls_roots!r}: {exc.strerror}") from None
        result = flight_query(args.flight, args.sql, args.username, os.environ.get("ARROS_FLIGHT_PASSWORD"), roots)
        write_result(result, args.format, args.output)
        return 0
    archive = _load(args).archive
    remote = (args.archive, archive) if args.archive else None
    write_result(run_query(Path(args.dir or archive.dir), args.sql, remote), args.format, args.output)
    return 0


def _connector(args: argparse.Namespace) -> int:
    from arros_mqtt.connectors.runner import ConnectorSet
    from arros_mqtt.egress.mqtt_sink import MqttSink

    config = _load(args)
    spec = config.connectors.get(args.name)
    if spec is None:
        raise ConfigError(config.source, f"connectors.{args.name}",
                          f"no such connector (known: {', '.join(config.connectors) or 'none'})")
    if spec.output is None:
        raise ConfigError(config.source, f"connectors.{args.name}.output",
                          "is required to run the connector alone: its readings are published there")
    if config.broker is None:
        raise ConfigError(config.source, "broker", "add a [broker] table or pass --broker mqtt://host:1883")
    sink = MqttSink(config.broker)
    running = ConnectorSet(config, None, sink.publish, names=[args.name])
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sink.start()
    running.start()
    while not stop.wait(1.0):
        pass
    running.stop()
    sink.stop()
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _run(args: argparse.Namespace) -> int:
    from arros_mqtt.service import workers

    config = _load(args)
    if args.worker_index is not None:  # one member of `--workers N`, started by the supervisor
        logging.getLogger().handlers[0].setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s [worker-{args.worker_index}] %(name)s: %(message)s"))
        return _serve(workers.worker_config(config, args.worker_index), parent=os.getppid())
    count = args.workers or config.engine.workers
    if count > 1:
        return _supervise(args, config, count)
    return _serve(config)


def _supervise(args: argparse.Namespace, config: Config, count: int) -> int:
    """`--workers N`: the config checked once as a member's (one-line errors), then N supervised children."""
    from arros_mqtt.service import workers
    from arros_mqtt.service.runtime import build_engine

    if config.broker is None:
        raise ConfigError(config.source, "engine.workers", f"{count} workers need an external broker to share "
                          "the streams: add a [broker] table or pass --broker (embedded mode runs one process)")
    build_engine(workers.worker_config(config, 0))
    arguments = [*(["-v"] if args.verbose else []), "run", *(["-c", args.config] if args.config else []),
                 *(["--broker", args.broker] if args.broker else [])]
    supervisor = workers.Supervisor(count, arguments, config.durability.shutdown_timeout)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop())
    log.info("starting %d workers in group %s", count, workers.group_config(config).cluster.group)
    supervisor.run()
    return 0


def _serve(config: Config, parent: int | None = None) -> int:
    """One service until SIGTERM / SIGINT (or, for a worker, until its supervisor is gone)."""
    from arros_mqtt.service.runtime import Service
    from arros_mqtt.service.workers import parent_gone

    service = Service(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    _freeze_startup_objects()
    while not stop.wait(1.0):
        if parent is not None and parent_gone(parent):
            log.warning("the supervising process is gone; stopping")
            break
    log.info("stopping")
    # A hard bound: whatever hangs past the shutdown timeout, the write-ahead log has it (next start replays).
    limit = service.config.durability.shutdown_timeout + 5.0
    watchdog = threading.Timer(limit, _give_up, args=(limit,))
    watchdog.daemon = True
    watchdog.start()
    service.stop()
    watchdog.cancel()
    return 0


def _bench(args: argparse.Namespace) -> int:
    """`arros bench`: runs `benchmarks/suite.py` of a source checkout in a process of its own.

    The suite drives real processes (Mosquitto, `arros run`, `mosquitto_sub`, DuckDB) and lives beside
    the package, not in it; an installed wheel without the checkout says so instead of failing later.
    """
    import shutil
    import subprocess
    from pathlib import Path

    suite = Path(__file__).resolve().parent.parent / "benchmarks" / "suite.py"
    if not suite.exists():
        raise UserError(f"arros bench runs from a source checkout: {suite} not found "
                        "(git clone the project, then `make bench`)")
    if shutil.which("mosquitto_sub") is None:
        raise UserError("mosquitto_sub not found: apt-get install mosquitto mosquitto-clients (or `make mosquitto`)")
    return subprocess.call([sys.executable, str(suite), *args.extra])


def _freeze_startup_objects() -> None:
    """Move everything start-up made (modules, plans, config) out of the cyclic GC's reach.

    A full (generation 2) collection walks every tracked object; with DataFusion, pyarrow and paho
    loaded that took 14-28 ms here, stalling the engine mid-stream (a spike at p99.9 in
    `benchmarks/latency.py`). Frozen, the same collection takes ~0.5 ms. Only the process owner may
    decide this (`arros run`): garbage frozen by mistake is never freed.
    """
    gc.collect()
    gc.freeze()


def _give_up(limit: float) -> None:
    log.error("shutdown took longer than %.0fs; exiting now (the next start replays the write-ahead log)", limit)
    logging.shutdown()
    os._exit(1)
