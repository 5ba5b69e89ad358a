"""`arros run --workers N`: N member processes of one `[cluster]` group on this machine, supervised.

One Python process runs on about one core, so N cores take N processes. Each worker is a real
`arros run` child (`--worker-index i`) with the parent's config plus what makes it a member of its own
(`worker_config`): the group (`[cluster] group`, else one derived from `state_dir`), `{state_dir}/worker-{i}`,
`{archive dir}/worker-{i}`, client id `{client_id}-w{i}`, and the Flight SQL, metrics and (a configured)
web console ports shifted by `i`.
The broker spreads each stream's messages over them (`$share/{group}/...`, docs/cluster.md).

The parent only supervises: a worker that exits while the parent runs is started again (after a backoff
that grows while it keeps failing), SIGTERM or SIGINT stops every worker (SIGTERM, then SIGKILL past the
shutdown timeout), and a worker whose parent is gone stops itself (`parent_gone`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from arros_mqtt.config import Config, default_client_id, parse_listen

log = logging.getLogger(__name__)
RESTART_MIN, RESTART_MAX = 1.0, 30.0  # seconds before a worker that exited is started again
STABLE_AFTER = 60.0  # a worker that ran this long starts again after RESTART_MIN
POLL_SECONDS = 0.2


def default_group(config: Config) -> str:
    """The group of `--workers` without `[cluster] group`: one per host and state_dir (as the default client
    id), so two installations on one broker never share their messages unless they name a group."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", default_client_id(config.engine.state_dir))[:64]


def group_config(config: Config) -> Config:
    """The parent's config as the group its workers form (checked once, before any worker starts)."""
    if config.cluster.group is not None:
        return config
    return replace(config, cluster=replace(config.cluster, group=default_group(config)))


def worker_config(config: Config, index: int) -> Config:
    """What worker `index` runs: the group's config with a state, an archive, a client id and ports of its own."""
    config = group_config(config)
    engine = replace(config.engine, state_dir=str(Path(config.engine.state_dir) / f"worker-{index}"), workers=1)
    archive = replace(config.archive, dir=str(Path(config.archive.dir) / f"worker-{index}"))
    cluster = config.cluster
    if cluster.member is not None:
        cluster = replace(cluster, member=f"{cluster.member}-w{index}")
    broker = replace(config.broker, client_id=f"{config.broker.client_id}-w{index}") if config.broker else None
    flight = replace(config.flight, listen=_shifted(config.flight.listen, index))
    metrics = config.metrics
    if metrics.listen is not None:
        metrics = replace(metrics, listen=_shifted(metrics.listen, index))
    web = config.web  # the default address: worker 0 takes it, the others warn and run without a console
    if web.listen is not None:
        web = replace(web, listen=_shifted(web.listen, index))
    return replace(config, engine=engine, archive=archive, cluster=cluster, broker=broker, flight=flight,
                   metrics=metrics, web=web)


def _shifted(listen: str, index: int) -> str:
    host, port = parse_listen(listen)
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port + index}"


def parent_gone(parent_pid: int) -> bool:
    """True once the supervising parent died (its worker was re-parented)."""
    return os.getppid() != parent_pid


@dataclass
class Worker:
    index: int
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = RESTART_MIN
    due: float = 0.0  # when to start it again after it exited


@dataclass
class Supervisor:
    """Starts `count` workers (`arros run ... --worker-index i`) and keeps them running until `stop`."""

    count: int
    arguments: list[str]  # what follows `python -m arros_mqtt` for a worker: [-v] run [-c ...] [--broker ...]
    shutdown_timeout: float = 10.0
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workers = [Worker(i) for i in range(self.count)]
        self._stopping = threading.Event()

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "arros_mqtt", *self.arguments, "--workers", str(self.count),
                "--worker-index", str(index)]

    def run(self) -> None:
        """Start every worker, restart those that exit, until `stop()`; then stop them all."""
        for worker in self.workers:
            self._start(worker)
        while not self._stopping.wait(POLL_SECONDS):
            for worker in self.workers:
                self._watch(worker)
        self._stop_all()

    def stop(self) -> None:
        self._stopping.set()

    def _start(self, worker: Worker) -> None:
        worker.process = subprocess.Popen(self.command(worker.index))
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _watch(self, worker: Worker) -> None:
        process = worker.process
        now = time.monotonic()
        if process is not None:
            code = process.poll()
            if code is None:
                return
            worker.process = None
            ran = now - worker.started
            worker.backoff = RESTART_MIN if ran >= STABLE_AFTER else min(RESTART_MAX, worker.backoff * 2)
            worker.due = now + (RESTART_MIN if ran >= STABLE_AFTER else worker.backoff)
            log.warning("worker %d (pid %d) exited with %s after %.1f s; starting it again in %.0f s",
                        worker.index, process.pid, _exit_text(code), ran, worker.due - now)
        elif now >= worker.due:
            worker.restarts += 1
            self._start(worker)

    def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout + 10.0
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in time; killing it (its write-ahead log has the rest)",
                          process.pid)
                process.kill()
                process.wait()
        log.info("all %d workers stopped", self.count)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"
