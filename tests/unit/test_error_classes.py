"""Every exception class Arros defines derives from ArrosError (core/errors.py), so a caller can tell
Arros's own errors from anything else with one `except ArrosError`, and each says whose fault it is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import arros_mqtt
from arros_mqtt.core.errors import ArrosError

# Not imported: `__main__` runs the CLI when imported; `testing` is test glue (Mosquitto for the tests).
SKIPPED = {"arros_mqtt.__main__", "arros_mqtt.testing"}


def package_modules() -> list[ModuleType]:
    """Every module of arros_mqtt, except those whose optional dependency (pymodbus, asyncua) is missing."""
    modules = []
    for info in pkgutil.walk_packages(arros_mqtt.__path__, "arros_mqtt."):
        if info.name in SKIPPED:
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ModuleNotFoundError as missing:
            if (missing.name or "").split(".")[0] == "arros_mqtt":
                raise  # one of ours: a real error, not an optional dependency
    return modules


def exception_classes(module: ModuleType) -> list[type[BaseException]]:
    """The exception classes defined in `module`, also those nested in its classes."""
    found, todo = [], [value for value in vars(module).values() if inspect.isclass(value)]
    while todo:
        cls = todo.pop()
        if cls.__module__ != module.__name__:
            continue  # imported, checked where it is defined
        if issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
        todo += [value for value in vars(cls).values() if inspect.isclass(value)]
    return found


MODULES = package_modules()
CLASSES = sorted({cls for module in MODULES for cls in exception_classes(module)},
                 key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def test_the_package_is_walked():
    names = {module.__name__ for module in MODULES}
    assert {"arros_mqtt.core.errors", "arros_mqtt.config", "arros_mqtt.cli", "arros_mqtt.control.protocol"} <= names
    assert ArrosError in CLASSES


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
def test_every_error_class_derives_from_arros_error(cls):
    assert issubclass(cls, ArrosError), f"{cls.__module__}.{cls.__qualname__} bases {cls.__bases__}"
