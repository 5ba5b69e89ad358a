"""The `arros simulate` and `arros demo` subcommands (argument parsing and signal handling only)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from arros_mqtt.core.errors import UserError


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _device_options(parser: argparse.ArgumentParser, rate: float) -> None:
    parser.add_argument("--robots", type=int, default=4, help="robot arms (default 4)")
    parser.add_argument("--agvs", type=int, default=4, help="AGVs / vehicles (default 4)")
    parser.add_argument("--cnc", type=int, default=6, help="CNC machines (default 6)")
    parser.add_argument("--rate", type=_positive(float), default=rate,
                        help=f"readings per second per device (default {rate:g})")
    parser.add_argument("--seconds", type=_positive(float), help="stop after this long")
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")


def add_simulate_command(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser("simulate", help="publish simulated robot, AGV and CNC telemetry to a broker")
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL (default %(default)s)")
    _device_options(sim, rate=5.0)
    sim.add_argument("--count", type=_positive(int), help="stop after this many messages")
    sim.add_argument("--late-fraction", type=_fraction, default=0.02,
                     help="share of readings published late and out of order (default %(default)s)")
    sim.add_argument("--late-max", type=_positive(float), default=8.0,
                     help="latest a held-back reading is published, in seconds (default %(default)s)")
    sim.add_argument("--anomaly-rate", type=_fraction, default=0.01,
                     help="chance per reading that an anomaly starts (default %(default)s)")
    sim.add_argument("--qos", type=int, choices=(0, 1), default=0)
    sim.add_argument("--topic-prefix", default="", help="prepend PREFIX/ to every topic")
    sim.set_defaults(handler=_simulate)


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="embedded broker + simulator + example subscriptions, results live")
    demo.add_argument("--listen", help="embedded broker address (default 127.0.0.1:1883, else a free port)")
    demo.add_argument("--web", help="web console address (default 127.0.0.1:8080, else a free port)")
    _device_options(demo, rate=5.0)
    demo.set_defaults(handler=_demo)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _simulate(args: argparse.Namespace) -> int:
    from arros_mqtt.config import Config
    from arros_mqtt.sim.simulator import SimOptions, simulate

    if args.seconds is None and args.count is None:
        print("simulating until Ctrl-C (bound the run with --seconds or --count)")
    Config().with_broker_url(args.broker)  # a bad URL is a one-line error before anything starts
    options = SimOptions(broker=args.broker, robots=args.robots, agvs=args.agvs, cnc=args.cnc, rate=args.rate,
                         seconds=args.seconds, count=args.count, late_fraction=args.late_fraction,
                         late_max=args.late_max, anomaly_rate=args.anomaly_rate, qos=args.qos, seed=args.seed,
                         topic_prefix=args.topic_prefix.strip("/"))
    stats = simulate(options, _stop_on_signals())
    kinds = ", ".join(f"{n} {kind}" for kind, n in stats.by_kind.items())
    print(f"sent {stats.sent} messages ({kinds}; {stats.late} late) to {args.broker}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from arros_mqtt.sim.demo import DemoOptions, run_demo

    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)  # the live table is the output
    if min(args.robots, args.agvs, args.cnc) < 0:
        raise UserError("device counts cannot be negative")
    options = DemoOptions(listen=args.listen, seconds=args.seconds, rate=args.rate, robots=args.robots,
                          agvs=args.agvs, cnc=args.cnc, seed=args.seed, web=args.web)
    run_demo(options, _stop_on_signals())
    return 0
