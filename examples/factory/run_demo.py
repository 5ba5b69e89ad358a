"""`make demo`: a Mosquitto on a free port, Arros on it, the factory simulator, derived results live.

Everything runs on 127.0.0.1 and stops on Ctrl-C (or after --seconds), each process by its own PID.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from simulate import simulate  # noqa: E402

from arros_mqtt.local_broker import HOST, start_mosquitto  # noqa: E402


def show(_client, _userdata, message) -> None:
    body = orjson.loads(message.payload)
    rows = body if isinstance(body, list) else [body]
    for row in rows:
        fields = "  ".join(f"{k}={v}" for k, v in row.items())
        print(f"{message.topic:<28} {fields}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, help="stop by itself after this long")
    parser.add_argument("--rate", type=float, default=10.0, help="readings per second per machine")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="arros-demo-") as tmp:
        broker = start_mosquitto(Path(tmp))
        print(f"Mosquitto on {broker.url}; subscribe yourself with: mosquitto_sub -p {broker.port} -t 'alerts/#' -v")
        arros = subprocess.Popen([sys.executable, "-m", "arros_mqtt", "run", "-c", str(HERE / "arros.toml"),
                                  "--broker", broker.url], cwd=HERE.parent.parent)
        viewer = mqtt.Client(CallbackAPIVersion.VERSION2)
        viewer.on_message = show
        viewer.connect(HOST, broker.port)
        viewer.subscribe([("alerts/#", 0), ("derived/#", 0)])
        viewer.loop_start()
        seconds = args.seconds
        sim = threading.Thread(target=simulate, args=(HOST, broker.port, args.rate, seconds), daemon=True)
        time.sleep(1.0)
        sim.start()
        deadline = time.monotonic() + seconds + 1 if seconds else None
        while not stop.wait(0.2):
            if deadline and time.monotonic() > deadline:
                break
        arros.send_signal(signal.SIGTERM)
        arros.wait(20)
        viewer.disconnect()
        viewer.loop_stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
