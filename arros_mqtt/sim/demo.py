"""`arros demo`: the embedded broker, the device simulator and the subscriptions of `demo.toml`, with
their latest results printed live as a compact table. What a newcomer runs first: nothing to install.

The table shows every subscription of `demo.toml` (latest row per output topic), so a subscription
added there shows up with no code. On a terminal it redraws in place twice a second; piped, it prints
a snapshot every 5 s. Ctrl-C (or `--seconds`) stops the simulator, then the service, which processes
and publishes everything received before it exits.
"""

from __future__ import annotations

import datetime as dt
import socket
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import TextIO

from arros_mqtt.config import Config, SubscriptionConfig, parse_config
from arros_mqtt.engine import Result
from arros_mqtt.sim.simulator import SimOptions, SimStats, simulate

HOST = "127.0.0.1"  # the demo listens on loopback only
WEB_PORT = 8080
ROWS_PER_SUBSCRIPTION = 6
KEEP_LAST = 200  # rows of a result batch looked at: the board shows the latest per topic only
CLEAR = "\x1b[H\x1b[2J"


def demo_config(listen: str) -> Config:
    text = files("arros_mqtt.sim").joinpath("demo.toml").read_text()
    config = parse_config(tomllib.loads(text), "arros demo (arros_mqtt/sim/demo.toml)")
    return replace(config, embedded=replace(config.embedded, listen=listen))


def pick_listen(listen: str | None, port: int = 1883) -> str:
    """The given address, else `port` on loopback when free (a system Mosquitto often holds 1883), else a
    free port."""
    if listen is not None:
        return listen
    with socket.socket() as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((HOST, port))
            return f"{HOST}:{port}"
        except OSError:
            probe.bind((HOST, 0))  # any free port
            return f"{HOST}:{probe.getsockname()[1]}"


class LiveBoard:
    """The latest result row per output topic of each subscription; fed on the engine thread."""

    def __init__(self, subscriptions: dict[str, SubscriptionConfig]) -> None:
        self.subscriptions = subscriptions
        self.counts = dict.fromkeys(subscriptions, 0)
        self.latest: dict[str, dict[str, tuple[float, dict]]] = {name: {} for name in subscriptions}
        self._lock = threading.Lock()

    def add(self, result: Result) -> None:
        sub = result.subscription.config
        table = result.table.slice(max(0, result.table.num_rows - KEEP_LAST))
        topics = sub.output.render(table) if sub.output else sub.name
        rows = table.to_pylist()
        if isinstance(topics, str):
            topics = [topics] * len(rows)
        now = time.monotonic()
        with self._lock:
            self.counts[sub.name] = self.counts.get(sub.name, 0) + result.table.num_rows
            latest = self.latest.setdefault(sub.name, {})
            for topic, row in zip(topics, rows, strict=True):
                latest[topic] = (now, row)

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, sub in self.subscriptions.items():
                latest = self.latest.get(name, {})
                output = sub.output.text if sub.output else "(no output)"
                lines.append(f"{name} -> {output}   {self.counts.get(name, 0):,} results, {len(latest)} topics")
                recent = sorted(latest.items(), key=lambda item: -item[1][0])[:ROWS_PER_SUBSCRIPTION]
                rows = [row for _, (_, row) in sorted(recent)]
                lines += _table(rows) if rows else ["  (nothing yet)"]
                lines.append("")
        return "\n".join(lines)


def _table(rows: list[dict]) -> list[str]:
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  " + "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))  # noqa: E731
    return [line(columns)] + [line(r) for r in cells]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%H:%M:%S.%f")[:-3]
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return "[" + ",".join(_cell(v) for v in value[:6]) + "]"
    if isinstance(value, dict) and set(value) == {"start", "end"}:  # a window
        return "-".join(v.astimezone().strftime("%H:%M:%S") if isinstance(v, dt.datetime) else _cell(v)
                        for v in (value["start"], value["end"]))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) + "}"
    return str(value)


@dataclass(frozen=True)
class DemoOptions:
    listen: str | None = None
    seconds: float | None = None
    rate: float = 5.0
    robots: int = 4
    agvs: int = 4
    cnc: int = 6
    seed: int | None = None
    web: str | None = None  # the web console's address (default 127.0.0.1:8080, else a free port)


def run_demo(options: DemoOptions, stop: threading.Event, out: TextIO = sys.stdout) -> SimStats:
    """Until `stop` is set or `seconds` pass; returns what the simulator sent."""
    from arros_mqtt.service.runtime import Service

    listen = pick_listen(options.listen)
    config = demo_config(listen)
    config = replace(config, web=replace(config.web, listen=pick_listen(options.web, WEB_PORT)))
    service = Service(config)
    board = LiveBoard(dict(config.subscriptions))
    service.pipeline.add_result_sink(board.add)
    service.start()
    host, _, port = listen.rpartition(":")
    host = HOST if host in ("0.0.0.0", "::", "[::]") else host
    sim_options = SimOptions(broker=f"mqtt://{host}:{port}", robots=options.robots, agvs=options.agvs,
                             cnc=options.cnc, rate=options.rate, seed=options.seed)
    sim_stop = threading.Event()
    sent: list[SimStats] = []
    sim = threading.Thread(target=lambda: sent.append(simulate(sim_options, sim_stop)), name="arros-sim",
                           daemon=True)
    sim.start()
    tty = out.isatty()
    started = time.monotonic()
    deadline = started + options.seconds if options.seconds is not None else float("inf")
    hint = f"watch raw data and results: mosquitto_sub -h {host} -p {port} -t 'alerts/#' -t 'derived/#' -v"
    if service.web is not None:
        hint = f"web console: {service.web.url}\n{hint}"
    next_print = started + (0.5 if tty else 5.0)
    try:
        while not stop.wait(0.1) and time.monotonic() < deadline:
            if time.monotonic() >= next_print:
                _print(out, board, service, listen, started, hint, tty)
                next_print += 0.5 if tty else 5.0
    finally:
        sim_stop.set()
        sim.join(15)
        service.stop()
    _print(out, board, service, listen, started, hint, tty, final=True)
    return sent[0] if sent else SimStats()


def _print(out: TextIO, board: LiveBoard, service, listen: str, started: float, hint: str, tty: bool,
           final: bool = False) -> None:
    readings = sum(s.rows for s in service.pipeline.stats.values())
    state = "stopped" if final else "Ctrl-C stops"
    header = (f"arros demo: embedded broker on {listen}, {time.monotonic() - started:.0f} s, "
              f"{readings:,} readings in ({state})\n{hint}\n")
    out.write((CLEAR if tty and not final else "\n") + header + "\n" + board.render() + "\n")
    out.flush()
