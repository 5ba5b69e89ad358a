"""A small CNC telemetry simulator: machines m1..m6 on two lines, with heat-ups and faults."""

from __future__ import annotations

import math
import random
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MACHINES = [("line1", f"m{i}") for i in (1, 2, 3)] + [("line2", f"m{i}") for i in (4, 5, 6)]


def reading(machine: str, tick: int, rng: random.Random) -> dict:
    phase = (tick / 200 + int(machine[1:])) % (2 * math.pi)
    temp = 70 + 15 * math.sin(phase) + rng.gauss(0, 1.5)
    status = "fault" if rng.random() < 0.01 else ("idle" if temp < 60 else "run")
    return {"ts": int(time.time() * 1000), "temp": round(temp, 2), "rpm": 0 if status != "run" else
            int(8000 + rng.gauss(0, 200)), "vibration": round(abs(rng.gauss(0.5, 0.2)), 3), "status": status}


def simulate(host: str, port: int, rate: float, seconds: float | None) -> int:
    """Publish `rate` readings/s per machine until `seconds` pass (or forever); returns messages sent."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"factory-sim-{random.randrange(10**6)}")
    client.connect(host, port)
    client.loop_start()
    rng, tick, sent = random.Random(7), 0, 0
    deadline = time.monotonic() + seconds if seconds else math.inf
    while time.monotonic() < deadline:
        for line, machine in MACHINES:
            client.publish(f"factory/{line}/{machine}/telemetry", orjson.dumps(reading(machine, tick, rng)), qos=0)
            sent += 1
        tick += 1
        time.sleep(1 / rate)
    client.disconnect()
    client.loop_stop()
    return sent
