"""Test and benchmark helpers, not used by the service: a Mosquitto on a free 127.0.0.1 port, started and
stopped by PID, and free ports.

Its config never relies on Mosquitto's default queue limits: `max_queued_messages 1000` silently drops
QoS 0 messages to a busy subscriber, which would look like loss in Arros.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout}s")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")
    return found


def run_as_me() -> str:
    """Mosquitto started by root drops to user `mosquitto`, who cannot read private temp dirs."""
    return f"user {getpass.getuser()}\n"


def mosquitto_config(directory: Path, port: int, extra: str = "") -> Path:
    config = directory / f"mosquitto-{port}.conf"
    config.write_text(
        f"listener {port} {HOST}\n"
        f"{run_as_me()}"
        "allow_anonymous true\n"
        "max_queued_messages 0\n"
        "max_queued_bytes 0\n"
        "max_inflight_messages 0\n"
        "persistence false\n"
        + extra
    )
    return config


@dataclass
class Mosquitto:
    """A Mosquitto we started; stopped by its PID only."""

    port: int
    config: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return self.config.with_suffix(".log")

    def start(self) -> Mosquitto:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.config)], stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_mosquitto(directory: Path, extra: str = "", port: int | None = None) -> Mosquitto:
    port = port or free_port()
    return Mosquitto(port, mosquitto_config(directory, port, extra)).start()
