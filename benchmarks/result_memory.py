"""Result memory: one input message whose per-row subscription makes many large results, and the peak
VmRSS of `arros run` while they are produced and published (issue 20 item 1).

One JSON array of `--rows` readings (one message, a few MB) goes to a filter that pads each row to
`--pad` bytes (`rpad`), so the round makes rows x pad bytes of results (100,000 x 2 kB = 200 MB) from
a small input. Measured in embedded mode (amqtt in-process) and in client mode on Mosquitto, each with
a real subscriber counting the results at QoS 1 (`--no-subscriber`: nobody subscribed, so the broker
routes nothing and only Arros's own side holds memory). Prints, per mode, the RSS before the input,
the peak while the results went out, the peak delta, the RSS once done, and how long it took.

    .venv/bin/python benchmarks/result_memory.py [--rows 100000] [--pad 2000] [--output-memory 8MiB]
        [--modes embedded,client] [--no-subscriber] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arros_mqtt.testing import HOST, free_port, start_mosquitto, wait_for_port  # noqa: E402
from benchmarks import mqtt_wire  # noqa: E402
from benchmarks.arros_process import ArrosProcess  # noqa: E402

TIMEOUT = 300.0  # a mode's results must all be out by then


def config(mode: str, port: int, metrics_port: int, state_dir: Path, pad: int, output_memory: str) -> str:
    broker = (f'[broker]\nurl = "mqtt://{HOST}:{port}"\nclient_id = "arros-result-memory"\nprotocol = "3.1.1"\n'
              if mode == "client" else f'[embedded]\nlisten = "{HOST}:{port}"\n')
    return f"""{broker}
[engine]
state_dir = "{state_dir}"
max_result_bytes = "1GiB"
[metrics]
listen = "{HOST}:{metrics_port}"
[durability]
output_memory = "{output_memory}"
[streams.telemetry]
topic = "rm/{{machine}}/telemetry"
schema = {{ ts = "timestamp[ms]", rpm = "int64", temp = "float64" }}
[streams.probe]
topic = "bench-probe/{{x}}"
schema = {{ v = "int64" }}
[subscriptions.padded]
sql = "SELECT machine, rpm, rpad('x', {pad}, 'y') AS pad FROM telemetry"
output = "rm-out/{{machine}}"
qos = 1
"""


def big_input(rows: int) -> bytes:
    return orjson.dumps([{"ts": 1_764_000_000_000 + i, "rpm": i, "temp": 20.0} for i in range(rows)])


def measure(mode: str, rows: int, pad: int, output_memory: str, subscriber: bool, directory: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        root = Path(tmp)
        broker = start_mosquitto(root) if mode == "client" else None
        port = broker.port if broker is not None else free_port()
        metrics_port = free_port()
        arros = ArrosProcess(root, config(mode, port, metrics_port, root / "state", pad, output_memory), metrics_port)
        receiver = None
        try:
            wait_for_port(port, 60)
            arros.wait_ready(port)
            receiver = mqtt_wire.Receiver(HOST, port, ["rm-out/#"], "rm-receiver") if subscriber else None
            before = arros.idle_rss_mb()
            payload = big_input(rows)
            sender = mqtt_wire.WireClient(HOST, port, "rm-sender")
            started = time.monotonic()
            sender.send(mqtt_wire.publish_packet(b"rm/m1/telemetry", payload))
            peak, deadline, done = before, started + TIMEOUT, False
            while time.monotonic() < deadline and arros.process.poll() is None:
                peak = max(peak, arros.rss_mb())
                out = arros.metric("arros_subscription_messages_out_total", "padded")
                got = len(receiver.messages) if receiver is not None else out
                if out >= rows and got >= rows:
                    done = True
                    break
                time.sleep(0.05)
            seconds = time.monotonic() - started
            for _ in range(20):  # what is still being handed over after the last count
                peak = max(peak, arros.rss_mb())
                time.sleep(0.05)
            sender.close()
            return {"mode": mode, "rows": rows, "pad": pad, "output_memory": output_memory,
                    "subscriber": subscriber, "results": len(receiver.messages) if receiver else int(out),
                    "complete": done, "rss_before_mb": round(before), "rss_peak_mb": round(peak),
                    "rss_delta_mb": round(peak - before), "rss_after_mb": round(arros.rss_mb()),
                    "seconds": round(seconds, 1), "result_mb": round(rows * pad / 1e6)}
        finally:
            if receiver is not None:
                receiver.close()
            arros.stop()
            if broker is not None:
                broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pad", type=int, default=2000)
    parser.add_argument("--output-memory", default="8MiB")
    parser.add_argument("--modes", default="embedded,client")
    parser.add_argument("--no-subscriber", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = []
    for mode in args.modes.split(","):
        run = measure(mode, args.rows, args.pad, args.output_memory, not args.no_subscriber,
                      Path(tempfile.gettempdir()))
        runs.append(run)
        print(f"{mode:9} {run['results']:>7,} results of {args.pad} B ({run['result_mb']} MB), subscriber "
              f"{'yes' if run['subscriber'] else 'no '}: RSS {run['rss_before_mb']} -> peak {run['rss_peak_mb']} MB "
              f"(+{run['rss_delta_mb']} MB), after {run['rss_after_mb']} MB, {run['seconds']} s"
              f"{'' if run['complete'] else '  INCOMPLETE'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
