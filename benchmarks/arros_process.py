"""`arros run` in a child process, as users run it, watched from outside: RSS and CPU from /proc, row
counters from its Prometheus endpoint. Nothing of the benchmark harness runs inside the measured
process, so its RSS and CPU seconds are Arros's own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks import mqtt_wire, workload

ROOT = Path(__file__).resolve().parent.parent
PROBE_TOPIC = "bench-probe/x"
_SAMPLE = re.compile(r'^(\w+)\{(\w+)="([^"]*)"\} ([0-9.e+-]+)$')
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))  # a TOML basic string


def service_config(broker_port: int, metrics_port: int, state_dir: Path, subscriptions: dict[str, dict],
                   fmt: str = "json", engine: dict | None = None, protocol: str = "5",
                   schema: dict | None = None, control: dict | None = None, durability: dict | None = None,
                   qos: int | None = None) -> str:
    """An arros.toml: the telemetry stream (event time `ts`, in order so no watermark delay, 1 s idle
    timeout so the last windows close soon after the load stops), a probe stream that tells when Arros
    is subscribed, `subscriptions`. With `qos` None nothing about QoS is written, so streams and
    results get the defaults a user gets (streams QoS 1, results QoS 1, windows QoS 2 with the log on);
    `qos = 0` sets it on every stream and subscription (the tuned rows; a subscription's own `qos` wins)."""
    qos_setting = {} if qos is None else {"qos": qos}
    tables: dict[str, dict] = {
        "broker": {"url": f"mqtt://127.0.0.1:{broker_port}", "client_id": f"arros-bench-{os.getpid()}",
                   "clean_start": True, "protocol": protocol},
        "engine": {"state_dir": str(state_dir), **(engine or {})},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "control": {"max_subscriptions": 0, **(control or {})},  # 10,000 subscriptions need the limit off
        "durability": durability or {},
        "streams.telemetry": {"topic": workload.TOPIC_PATTERN, "format": fmt, **qos_setting, "event_time": "ts",
                              "watermark": "0s", "idle_timeout": "1s", "schema": schema or workload.SCHEMA},
        "streams.probe": {"topic": "bench-probe/{x}", **qos_setting, "schema": {"v": "int64"}},
    }
    tables.update({f"subscriptions.{name}": {**qos_setting, **sub} for name, sub in subscriptions.items()})
    return "\n".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in body.items())
                     for name, body in tables.items())


def cpu_per_1k_msgs_per_s(cpu_seconds: float, msgs_per_s: float, seconds: float) -> float:
    """CPU seconds used during a run / (msg/s / 1,000) / run seconds: the share of one core that each
    1,000 msg/s sustained costs (0.1 = a tenth of a core; equal to CPU seconds per 1,000 messages)."""
    return cpu_seconds / (msgs_per_s / 1000) / seconds if msgs_per_s and seconds else float("nan")


class Usage:
    """CPU seconds and peak RSS of an `ArrosProcess` over one measured stretch: made at its start,
    `sample` as often as the caller polls, `stop` at its end."""

    def __init__(self, arros: ArrosProcess) -> None:
        self.arros = arros
        self._cpu_start = arros.cpu_seconds()
        self.peak_rss_mb = arros.rss_mb()
        self.cpu_seconds = 0.0

    def sample(self) -> None:
        self.peak_rss_mb = max(self.peak_rss_mb, self.arros.rss_mb())

    def stop(self) -> None:
        self.sample()
        self.cpu_seconds = self.arros.cpu_seconds() - self._cpu_start


class ArrosProcess:
    """A started `arros run -c CONFIG`; stopped by its PID only."""

    def __init__(self, directory: Path, config: str, metrics_port: int) -> None:
        self.directory = directory
        self.metrics_port = metrics_port
        path = directory / "arros.toml"
        path.write_text(config)
        self.log = directory / "arros.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "arros_mqtt", "run", "-c", str(path)],
                                            stdout=log, stderr=subprocess.STDOUT, cwd=directory,
                                            env={**os.environ, "PYTHONPATH": str(ROOT)})

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, broker_port: int, timeout: float = 300.0) -> None:
        """Until Arros decodes a probe message: it is subscribed to every stream (one SUBSCRIBE)."""
        client = mqtt_wire.WireClient("127.0.0.1", broker_port, "bench-probe")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"arros exited with {self.process.returncode}: {self.tail()}")
                if self.metric("arros_stream_rows_total", "probe"):
                    return
                client.send(mqtt_wire.publish_packet(PROBE_TOPIC.encode(), b'{"v":1}'))
                time.sleep(0.2)
        finally:
            client.close()
        raise TimeoutError(f"arros not ready after {timeout}s: {self.tail()}")

    def idle_rss_mb(self) -> float:
        """RSS once the process has settled after `wait_ready` (start-up garbage collected, threads idle)."""
        time.sleep(0.5)
        return self.rss_mb()

    def metrics(self) -> dict[tuple[str, str], float]:
        """{(metric, label value): value} from /metrics; {} while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30) as response:
                text = response.read().decode()
        except OSError:
            return {}
        found = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match:
                found[(match[1], match[3])] = float(match[4])
        return found

    def metric(self, name: str, label: str) -> float:
        return self.metrics().get((name, label), 0.0)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process, all its threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def tail(self, lines: int = 5) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
