"""PLC servers for the connector tests, each a separate process on a free 127.0.0.1 port, stopped by
PID and restartable on the same port (to test connection loss and recovery)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT, free_port, wait_for_port

PEERS = ROOT / "tests" / "peers"


@dataclass
class PeerServer:
    script: str
    directory: Path
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 30.0) -> PeerServer:
        log = open(self.directory / f"{Path(self.script).stem}-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, str(PEERS / self.script), str(self.port), *self.args],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for_port(self.port, ready_timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def modbus_server(directory: Path, values: dict[str, list]) -> PeerServer:
    path = directory / f"modbus-values-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(values))
    return PeerServer("modbus_server.py", directory, [str(path)]).start()


def opcua_server(directory: Path) -> PeerServer:
    return PeerServer("opcua_server.py", directory).start()


def wait_until(condition, timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


class Readings:
    """What a connector emitted (its `emit` callback), thread-safe for the connector's own thread."""

    def __init__(self) -> None:
        self.values: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, values: dict, read_ms: int) -> None:
        with self._lock:
            self.values.append(values)

    def count(self) -> int:
        with self._lock:
            return len(self.values)

    def last(self) -> dict:
        with self._lock:
            return self.values[-1]

    def seen(self, expected: dict) -> bool:
        with self._lock:
            return expected in self.values
