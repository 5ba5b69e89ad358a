"""The import-time check behind paho_internals.py and amqtt_internals.py: the installed library is a version
we tested, and it still has every private name we use. Without it a release that renamed one would break
packet ids or wake-ups silently, or fail later inside a network thread instead of at start."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from arros_mqtt.core.errors import DependencyError


@dataclass(frozen=True)
class Privates:
    """Private names one object of a library must have. `have` lists the names the object has (it may
    import or inspect; if it raises, every name counts as missing)."""

    where: str  # as the error names it: "paho.mqtt.client.Client", "paho.mqtt._packet"
    have: Callable[[], Collection[str]]
    names: tuple[str, ...]

    def missing(self) -> list[str]:
        try:
            present = self.have()
        except Exception:  # e.g. the module is gone: all of its names are
            present = ()
        return [f"{self.where}.{name}" for name in self.names if name not in present]


def init_attributes(cls: type) -> set[str]:
    """The attribute names `cls.__init__` uses: instance attributes exist only once it ran, and building an
    instance to look (an amqtt Broker, say) would cost more than the check is worth."""
    return set(inspect.unwrap(cls.__init__).__code__.co_names)


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.2.0' -> (2, 2, 0); a pre-release or local suffix is ignored ('0.12.1rc1' -> (0, 12, 1))."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def check_library(distribution: str, lowest: str, below: str, tested_with: str, privates: Iterable[Privates],
                  installed: str | None = None) -> None:
    """Raise one DependencyError unless `lowest` <= the installed version < `below` and no name is missing.

    `tested_with`: the version the error suggests. `installed` defaults to the distribution's installed
    version (the tests pass others)."""
    if installed is None:
        try:
            installed = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            installed = "(version unknown)"
    tested = f">={lowest},<{below}"
    missing = [name for entry in privates for name in entry.missing()]
    in_range = version_tuple(lowest) <= version_tuple(installed) < version_tuple(below)
    if in_range and not missing:
        return
    problem = (f"that this version lacks: {', '.join(missing)}" if missing
               else "which other versions may lack or use differently")
    raise DependencyError(
        f"{distribution} {installed} is installed; Arros is tested with {distribution} {tested} and relies on "
        f"private names of it {problem}. Install a tested version: pip install '{distribution}=={tested_with}'")
