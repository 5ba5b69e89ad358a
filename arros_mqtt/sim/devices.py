"""Simulated devices: each keeps a little physical state and yields one JSON reading per step.

Realistic enough to make the SQL interesting: Gaussian sensor noise, slow drifts (heat-up, tool wear,
battery drain), rare anomalies (a joint overheating, a vibration spike, an AGV fault), counters that
only grow. Timestamps are epoch milliseconds of the simulated reading, set by the caller.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

JOINTS = 6
FAULTS = ["obstacle", "e_stop", "lidar_dirty"]  # what stops an AGV


def _noisy(rng: random.Random, value: float, sigma: float, digits: int = 2) -> float:
    return round(value + rng.gauss(0, sigma), digits)


@dataclass
class Episode:
    """Something that starts now and then and lasts some steps: an overheat, a fault, an idle spell."""

    what: object = None  # what is going on (a joint, a fault's name); None between episodes
    left: int = 0

    @property
    def active(self) -> bool:
        return self.what is not None

    def maybe_start(self, rng: random.Random, chance: float, what: Callable[[], object],
                    steps: tuple[int, int]) -> None:
        """Start with probability `chance` unless one is going on; `what` is drawn only when it starts."""
        if self.what is None and rng.random() < chance:
            self.what = what()
            self.left = rng.randint(*steps)

    def tick(self) -> None:
        """One step of it has passed."""
        if self.what is not None:
            self.left -= 1
            if self.left <= 0:
                self.what = None


@dataclass
class RobotArm:
    """A 6-axis robot arm in a cell: joint temperatures and torques, a cycle counter.

    Topic `cell/{cell}/{robot}/telemetry`. Anomaly: one joint heats up well past 80 °C for a while.
    """

    cell: str
    robot: str
    cycles: int = 0
    base_temp: list[float] = field(default_factory=lambda: [40.0] * JOINTS)
    overheat: Episode = field(default_factory=Episode)  # which joint overheats

    @property
    def topic(self) -> str:
        return f"cell/{self.cell}/{self.robot}/telemetry"

    def step(self, rng: random.Random, step: int, anomaly_rate: float) -> dict:
        self.overheat.maybe_start(rng, anomaly_rate, lambda: rng.randrange(JOINTS), (20, 60))
        phase = math.sin(step / 25)  # a work cycle: load and rest
        temps, torques = [], []
        for joint in range(JOINTS):
            target = 45 + 8 * joint / JOINTS + 6 * phase
            if joint == self.overheat.what:
                target += 45
            self.base_temp[joint] += 0.2 * (target - self.base_temp[joint])
            temps.append(_noisy(rng, self.base_temp[joint], 0.4, 1))
            torques.append(_noisy(rng, (12 - joint * 1.5) * (1 + 0.5 * phase), 0.6))
        self.overheat.tick()
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
    fault: Episode = field(default_factory=Episode)  # its name: obstacle, e_stop, lidar_dirty

    @property
    def topic(self) -> str:
        return f"fleet/{self.vehicle}/telemetry"

    def step(self, rng: random.Random, _step: int, anomaly_rate: float) -> dict:
        if self.driving_left:
            self.fault.maybe_start(rng, anomaly_rate, lambda: rng.choice(FAULTS), (5, 30))
        speed = 0.0
        if self.fault.active:
            self.fault.tick()
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
                "battery": round(self.battery, 1), "fault": self.fault.what, "trip": self.trip}


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
    fault: Episode = field(default_factory=Episode)  # spindle stopped
    idle: Episode = field(default_factory=Episode)  # waiting for material

    @property
    def topic(self) -> str:
        return f"factory/{self.line}/{self.machine}/telemetry"

    def step(self, rng: random.Random, _step: int, anomaly_rate: float) -> dict:
        self.fault.maybe_start(rng, anomaly_rate, lambda: "fault", (10, 40))
        if not self.fault.active:
            self.idle.maybe_start(rng, 0.01, lambda: "idle", (10, 50))
        if self.fault.active:
            self.fault.tick()
            status, rpm = "fault", 0
        elif self.idle.active:
            self.idle.tick()
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
