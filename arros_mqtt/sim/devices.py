"""Simulated devices: each keeps a little physical state and yields one JSON reading per step.

Realistic enough to make the SQL interesting: Gaussian sensor noise, slow drifts (heat-up, tool wear,
battery drain), rare anomalies (a joint overheating, a vibration spike, an AGV fault), counters that
only grow. Timestamps are epoch milliseconds of the simulated reading, set by the caller.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

JOINTS = 6


def _noisy(rng: random.Random, value: float, sigma: float, digits: int = 2) -> float:
    return round(value + rng.gauss(0, sigma), digits)


@dataclass
class RobotArm:
    """A 6-axis robot arm in a cell: joint temperatures and torques, a cycle counter.

    Topic `cell/{cell}/{robot}/telemetry`. Anomaly: one joint heats up well past 80 °C for a while.
    """

    cell: str
    robot: str
    cycles: int = 0
    base_temp: list[float] = field(default_factory=lambda: [40.0] * JOINTS)
    overheat_joint: int | None = None
    overheat_left: int = 0

    @property
    def topic(self) -> str:
        return f"cell/{self.cell}/{self.robot}/telemetry"

    def step(self, rng: random.Random, step: int, anomaly_rate: float) -> dict:
        if self.overheat_joint is None and rng.random() < anomaly_rate:
            self.overheat_joint, self.overheat_left = rng.randrange(JOINTS), rng.randint(20, 60)
        phase = math.sin(step / 25)  # a work cycle: load and rest
        temps, torques = [], []
        for joint in range(JOINTS):
            target = 45 + 8 * joint / JOINTS + 6 * phase
            if joint == self.overheat_joint:
                target += 45
            self.base_temp[joint] += 0.2 * (target - self.base_temp[joint])
            temps.append(_noisy(rng, self.base_temp[joint], 0.4, 1))
            torques.append(_noisy(rng, (12 - joint * 1.5) * (1 + 0.5 * phase), 0.6))
        if self.overheat_joint is not None:
            self.overheat_left -= 1
            if self.overheat_left <= 0:
                self.overheat_joint = None
        if rng.random() < 0.2:
            self.cycles += 1
        state = "running" if phase > -0.8 else "waiting"
        return {"joint_temp": temps, "torque": torques, "cycles": self.cycles, "state": state}


@dataclass
class Agv:
    """An automated guided vehicle driving trips between stations; parks (speed 0) between trips.

    Topic `fleet/{vehicle}/telemetry`. Battery drains while driving and charges while parked;
    anomaly: a fault (obstacle, e-stop, lidar) that stops the vehicle for a while.
    """

    vehicle: str
    x: float = 0.0
    y: float = 0.0
    heading: float = 0.0
    battery: float = 100.0
    driving_left: int = 0
    parked_left: int = 0
    trip: int = 0
    fault: str | None = None
    fault_left: int = 0

    @property
    def topic(self) -> str:
        return f"fleet/{self.vehicle}/telemetry"

    def step(self, rng: random.Random, _step: int, anomaly_rate: float) -> dict:
        if self.fault is None and self.driving_left and rng.random() < anomaly_rate:
            self.fault, self.fault_left = rng.choice(["obstacle", "e_stop", "lidar_dirty"]), rng.randint(5, 30)
        speed = 0.0
        if self.fault is not None:
            self.fault_left -= 1
            if self.fault_left <= 0:
                self.fault = None
        elif self.driving_left > 0:
            self.driving_left -= 1
            self.heading += rng.gauss(0, 0.15)
            speed = max(0.0, rng.gauss(1.6, 0.15))  # m/s
            self.x += speed * math.cos(self.heading) * 0.1
            self.y += speed * math.sin(self.heading) * 0.1
            self.battery = max(0.0, self.battery - rng.uniform(0.02, 0.06))
            if self.driving_left == 0:
                self.parked_left = rng.randint(20, 80)
        elif self.parked_left > 0:
            self.parked_left -= 1
            self.battery = min(100.0, self.battery + 0.05)
        else:
            self.trip += 1
            self.driving_left = rng.randint(40, 200)
        return {"x": round(self.x, 2), "y": round(self.y, 2), "speed": round(speed, 2),
                "battery": round(self.battery, 1), "fault": self.fault, "trip": self.trip}


@dataclass
class CncMachine:
    """A CNC machine on a line: spindle speed, temperature, vibration, status, part counters.

    Topic `factory/{line}/{machine}/telemetry`. Tool wear raises vibration until the tool is changed;
    anomaly: a fault (spindle stopped) for a while. `parts` and `scrap` only grow.
    """

    line: str
    machine: str
    temp: float = 45.0
    wear: float = 0.0
    parts: int = 0
    scrap: int = 0
    fault_left: int = 0
    idle_left: int = 0

    @property
    def topic(self) -> str:
        return f"factory/{self.line}/{self.machine}/telemetry"

    def step(self, rng: random.Random, _step: int, anomaly_rate: float) -> dict:
        if not self.fault_left and rng.random() < anomaly_rate:
            self.fault_left = rng.randint(10, 40)
        if not self.fault_left and not self.idle_left and rng.random() < 0.01:
            self.idle_left = rng.randint(10, 50)  # waiting for material
        if self.fault_left:
            self.fault_left -= 1
            status, rpm = "fault", 0
        elif self.idle_left:
            self.idle_left -= 1
            status, rpm = "idle", 0
        else:
            status, rpm = "run", int(rng.gauss(8000, 150))
            self.wear += rng.uniform(0, 0.004)
            if rng.random() < 0.05:
                self.parts += 1
                self.scrap += rng.random() < 0.02 + self.wear / 10
        if self.wear > 1.0:
            self.wear = 0.0  # tool change
        self.temp += 0.05 * ((30 + rpm / 160) - self.temp)
        vibration = abs(rng.gauss(0.4 + 2.0 * self.wear * (rpm > 0), 0.08))
        if rpm and rng.random() < anomaly_rate:
            vibration += rng.uniform(2, 4)  # a chatter spike
        return {"spindle_rpm": rpm, "temp": _noisy(rng, self.temp, 0.3), "vibration": round(vibration, 3),
                "status": status, "parts": self.parts, "scrap": self.scrap}
