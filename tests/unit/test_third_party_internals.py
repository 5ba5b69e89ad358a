"""paho-mqtt and amqtt private names: each one Arros relies on is listed here and present in the installed
library, only transport/paho_internals.py and transport/amqtt_internals.py use them (an ast scan of the
package), and their import-time check fails with one clear error. No broker, no subprocess."""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from amqtt.broker import Broker
from paho.mqtt.enums import CallbackAPIVersion

from arros_mqtt.core.errors import ArrosError, DependencyError
from arros_mqtt.transport import amqtt_internals, paho_internals
from arros_mqtt.transport.library_check import Privates

PACKAGE = Path(__file__).resolve().parents[2] / "arros_mqtt"
INTERNALS = {PACKAGE / "transport" / "paho_internals.py", PACKAGE / "transport" / "amqtt_internals.py"}
LIBRARIES = ("paho", "amqtt")

# Every private name used, by library and object ("X()": an attribute of an instance). Adding one to an
# internals module means adding it here and to that module's PRIVATES (checked at import).
PAHO = {
    "paho.mqtt.client.Client": {
        "_easy_log", "_handle_on_message", "_handle_pubrec", "_mid_generate", "_packet_queue", "_packet_read",
        "_packet_write",
        "_send_pubrel", "_sock_recv", "_sock_send"},
    "paho.mqtt.client.Client()": {
        "_callback_mutex", "_client_id", "_in_callback_mutex", "_in_packet", "_inflight_messages",
        "_last_bytes_received", "_last_mid",
        "_last_msg_out", "_mid_generate_mutex", "_msgtime_mutex", "_out_message_mutex", "_out_messages",
        "_out_packet", "_protocol", "_sock", "_sockpairW", "_thread", "_userdata"},
    "paho.mqtt.client.MQTTMessageInfo": {"_set_as_published"},
    "paho.mqtt._packet": {"decode_pubrec"},
}
AMQTT = {
    "amqtt.broker.Broker": {"_publish_retained_messages_for_subscription", "_handle_disconnect"},
    "amqtt.broker.Broker()": {"_broadcast_queue", "_tasks_queue"},
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# -- (a) the list, and the installed libraries have each name --


@pytest.mark.parametrize(("module", "listed"), [(paho_internals, PAHO), (amqtt_internals, AMQTT)],
                         ids=["paho", "amqtt"])
def test_each_private_name_is_listed_and_checked_at_import(module, listed):
    assert {entry.where: set(entry.names) for entry in module.PRIVATES} == listed
    source = Path(module.__file__).read_text()
    body = source[source.index("\ncheck()\n"):]  # the code after the lists
    unused = {name for names in listed.values() for name in names if not re.search(rf"\b{name}\b", body)}
    assert not unused, f"listed but not used by {module.__name__}: {sorted(unused)}"


def _installed(where: str) -> object:
    """The object itself: a real paho Client and amqtt Broker (built, not connected or started)."""
    if where == "paho.mqtt.client.Client()":
        return mqtt.Client(CallbackAPIVersion.VERSION2)
    if where == "amqtt.broker.Broker()":
        async def build() -> Broker:  # on a loop of its own: whatever other tests left as the current one
            return Broker({"listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}}})

        return asyncio.run(build())
    module, _, attribute = where.rpartition(".")
    try:
        return importlib.import_module(where)
    except ImportError:
        return getattr(importlib.import_module(module), attribute)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # amqtt's Broker warns about psutil
@pytest.mark.parametrize(("where", "name"), sorted((where, name) for listed in (PAHO, AMQTT)
                                                   for where, names in listed.items() for name in names))
def test_the_installed_library_has_it(where, name):
    assert hasattr(_installed(where), name), f"{where} has no {name}: update transport/*_internals.py"


# -- (b) nobody else uses a private name of paho or amqtt --


def _library(module: str) -> bool:
    return module.split(".")[0] in LIBRARIES


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted path, for imports of paho/amqtt (anywhere in the module) and of arros_mqtt."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _resolve(path: str) -> object | None:
    """'paho.mqtt.client.Client' -> the class (imports the longest module prefix)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        except Exception:  # a module of ours mid-edit: its own tests say so
            return None
        try:
            for attribute in parts[cut:]:
                found = getattr(found, attribute)
        except AttributeError:
            return None
        return found
    return None


@cache
def _privates_of(cls: type) -> frozenset[str]:
    """A library class's private names: its own attributes, and those its methods set or read on `self`."""
    names = {name for name in vars(cls) if _private(name)}
    try:
        tree = ast.parse(inspect.getsource(cls).lstrip())  # a nested class's source is indented
    except (OSError, TypeError, SyntaxError):
        return frozenset(names)
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and _private(node.attr)
              and isinstance(node.value, ast.Name) and node.value.id == "self"}
    return frozenset(names)


def _library_privates(cls: type) -> frozenset[str]:
    """Private names of the paho/amqtt classes `cls` derives from (or is)."""
    return frozenset().union(*(_privates_of(base) for base in cls.__mro__ if _library(base.__module__)))


def _library_base(node: ast.ClassDef, aliases: dict[str, str], classes: dict[str, ast.ClassDef]) -> type | None:
    """The imported class `node` derives from, if it is or derives from a paho/amqtt class; through bases
    defined in the same module (`classes`) too."""
    for base in node.bases:
        dotted = _dotted(base)
        if dotted is None:
            continue
        head, _, rest = dotted.partition(".")
        if head in aliases:
            found = _resolve(f"{aliases[head]}.{rest}" if rest else aliases[head])
            if isinstance(found, type) and any(_library(cls.__module__) for cls in found.__mro__):
                return found
        elif dotted in classes and classes[dotted] is not node:
            found = _library_base(classes[dotted], aliases, classes)
            if found is not None:
                return found
    return None


def _receiver(node: ast.expr) -> str | None:
    """'self' / 'cls' / 'super' for the receivers a class's own code uses, else None."""
    if isinstance(node, ast.Name) and node.id in ("self", "cls"):
        return node.id
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super":
        return "super"
    return None


def _own_attributes() -> set[str]:
    """Private names Arros's code outside the internals modules sets on an object or defines (those set in
    the internals modules, e.g. paho's `_last_mid`, stay paho's)."""
    names: set[str] = set()
    for path in _modules():
        if path in INTERNALS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _private(node.name):
                names.add(node.name)
    return names


def _modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "vendor" not in path.parts:
            yield path


@cache
def _all_library_privates() -> frozenset[str]:
    """Private names of the paho/amqtt classes Arros imports: objects of them are what code holds."""
    names: set[str] = set()
    for path in _modules():
        for target in _aliases(ast.parse(path.read_text())).values():
            found = _resolve(target) if _library(target) else None
            classes = [found] if isinstance(found, type) else (
                [c for c in vars(found).values() if isinstance(c, type) and c.__module__ == found.__name__]
                if inspect.ismodule(found) else [])
            for cls in classes:
                names |= _library_privates(cls)
    return frozenset(names)


def violations(source: str, own: set[str], held: frozenset[str]) -> list[str]:
    """Uses of paho/amqtt private names in `source`, the text of a module. The heuristic:

    - importing a private name or module of paho/amqtt, or `alias._x` on a name bound to their imports;
    - in a class deriving from a paho/amqtt class: `self._x`, `cls._x`, `super()._x`, `def _x` or `_x = ...`
      where `_x` belongs to that library class;
    - anywhere else: `obj._x` where `_x` is a private name of a paho/amqtt class and no class of ours
      defines an attribute of that name (so `client._client_id` is caught, `journal._fd` is not).
    """
    tree = ast.parse(source)
    aliases = _aliases(tree)
    classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"line {node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _library(alias.name) and any(_private(part) for part in alias.name.split(".")):
                    report(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and _library(node.module):
            for alias in node.names:
                if _private(alias.name) or any(_private(part) for part in node.module.split(".")):
                    report(node, f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node.value)
            head = dotted.split(".")[0] if dotted else None
            if head in aliases and _library(aliases[head]):
                report(node, f"{dotted}.{node.attr}")
            elif _receiver(node.value) is None and node.attr in held and node.attr not in own:
                report(node, f"{ast.unparse(node.value)}.{node.attr}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        base = _library_base(node, aliases, classes)
        if base is None:
            continue
        library = _library_privates(base)
        for inner in ast.walk(node):
            if isinstance(inner, ast.Attribute) and _receiver(inner.value) and inner.attr in library:
                report(inner, f"{node.name}: {_receiver(inner.value)}.{inner.attr}")
            elif isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef) and inner.name in library:
                report(inner, f"{node.name} overrides {inner.name}")
            elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store) and inner.id in library:
                report(inner, f"{node.name} sets {inner.id}")
    return found


def test_only_the_internals_modules_use_private_names_of_paho_or_amqtt():
    own = _own_attributes()
    held = _all_library_privates()
    found = {}
    for path in _modules():
        if path in INTERNALS:
            continue
        problems = violations(path.read_text(), own, held)
        if problems:
            found[str(path.relative_to(PACKAGE.parent))] = problems
    assert not found, f"move these into transport/paho_internals.py or amqtt_internals.py: {found}"


def test_the_scan_catches_what_the_old_code_did():
    """The scan itself, on the uses that the internals modules replaced."""
    source = '''
import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from arros_mqtt.transport.paho_internals import ReadHooks

def name(client):
    return client._client_id.decode()

def busy(broker):
    return not broker._broadcast_queue.empty()

def builder():
    from amqtt.broker import Broker

    class Fixed(Broker):
        async def _publish_retained_messages_for_subscription(self, subscription, session):
            return self._subscriptions

    return Fixed

class Reader(mqtt.Client):
    def _sock_recv(self, bufsize):
        self._mine = 1
        return super()._sock_recv(bufsize) if self._sock else b""

class Indirect(ReadHooks):
    def poll(self):
        return self._in_packet, self._read_buffer

class Deeper(Reader):
    def _handle_on_message(self, message):
        pass
'''
    found = violations(source, own={"_mine", "_read_buffer"}, held=_all_library_privates())
    expected = ["from paho.mqtt import _packet", "client._client_id", "broker._broadcast_queue",
                "Fixed overrides _publish_retained_messages_for_subscription", "Fixed: self._subscriptions",
                "Reader overrides _sock_recv", "Reader: super._sock_recv", "Reader: self._sock",
                "Indirect: self._in_packet", "Deeper overrides _handle_on_message"]
    for what in expected:
        assert any(line.endswith(what) for line in found), (what, found)
    assert len(found) == len(expected), found  # neither `self._mine` nor our own `_read_buffer`


# -- (c) the check fails with one clear error --


def test_a_missing_name_is_one_clear_error_naming_library_versions_and_names():
    fake = (Privates("paho.mqtt.client.Client", lambda: dir(mqtt.Client), ("_sock_recv", "_no_such_method")),
            Privates("paho.mqtt._gone", lambda: dir(importlib.import_module("paho.mqtt._gone")), ("decode",)))
    with pytest.raises(DependencyError) as raised:
        paho_internals.check(fake)
    message = str(raised.value)
    assert isinstance(raised.value, ArrosError)
    assert message.startswith(f"paho-mqtt {importlib.metadata.version('paho-mqtt')} is installed; ")
    assert "tested with paho-mqtt >=2.2,<3" in message
    assert "lacks: paho.mqtt.client.Client._no_such_method, paho.mqtt._gone.decode." in message
    assert "_sock_recv" not in message
    assert message.endswith(f"Install a tested version: pip install 'paho-mqtt=={paho_internals.TESTED_WITH}'")


@pytest.mark.parametrize(("module", "version"), [(paho_internals, "2.1.0"), (paho_internals, "3.0.0"),
                                                 (amqtt_internals, "0.11.2"), (amqtt_internals, "0.13.0")])
def test_an_untested_version_is_refused(module, version):
    with pytest.raises(DependencyError, match=rf"^\S+ {version} is installed; Arros is tested with "):
        module.check(installed=version)


@pytest.mark.parametrize(("module", "version"), [(paho_internals, "2.2.0"), (paho_internals, "2.9.1"),
                                                 (amqtt_internals, "0.12.1"), (amqtt_internals, "0.12.9rc1")])
def test_a_tested_version_with_every_name_passes(module, version):
    module.check(installed=version)
