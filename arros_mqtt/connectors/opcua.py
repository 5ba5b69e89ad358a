"""OPC UA (asyncua client): a data-change subscription to node ids; one row per notification batch.

The server samples each node every `sampling_interval` (default: `interval`) and publishes changes
every `interval`. Each publish the client receives becomes one row holding the latest value of every
node (nodes that have not reported yet are null), so a row is a consistent snapshot, as a Modbus
poll is. Anonymous sessions without message security; the connection is checked every second and a
lost one is reconnected with backoff (the subscription is created again).

```toml
[connectors.line_opc]
kind = "opcua"
url = "opc.tcp://127.0.0.1:4840"
interval = "100ms"
stream = "line"
nodes = [ { name = "speed", node = "ns=2;i=2" }, { name = "count", node = "ns=2;s=Line1.Count" } ]
```
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any

from arros_mqtt.connectors.base import Connector
from arros_mqtt.connectors.options import Options

# OPC UA node id text form (Part 6, 5.3.1.10): optional ns=/nsu=, then i=, s=, g= or b=.
NODE_ID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=[A-Za-z0-9+/=]+)$")
HEALTH_CHECK = 1.0


@dataclass(frozen=True)
class OpcuaNode:
    name: str
    node: str


@dataclass(frozen=True)
class OpcuaOptions:
    url: str
    nodes: tuple[OpcuaNode, ...]
    sampling_interval: float | None  # seconds; None: the connector's interval
    timeout: float


class OpcuaConnector(Connector):
    kind = "opcua"
    requires = "asyncua"
    option_keys = ("url", "nodes", "sampling_interval", "timeout")

    @classmethod
    def read_options(cls, opts: Options) -> OpcuaOptions:
        url = opts.get("url", str, required=True)
        if not url.startswith("opc.tcp://"):
            raise opts.error("url", f"{url!r} is not an OPC UA endpoint (opc.tcp://host:4840)")
        nodes = []
        for item in opts.items("nodes"):
            item.only("name", "node")
            node = OpcuaNode(item.get("name", str, required=True), item.get("node", str, required=True))
            if not NODE_ID.match(node.node):
                raise item.error("node", f"{node.node!r} is not a node id (e.g. \"ns=2;i=2\", \"ns=2;s=Line1.Count\")")
            if node.name in (n.name for n in nodes):
                raise item.error("name", f"{node.name!r} appears twice")
            nodes.append(node)
        sampling = None
        if "sampling_interval" in opts.data:
            from arros_mqtt.core.durations import parse_duration

            try:
                sampling = parse_duration(opts.data["sampling_interval"])
            except ValueError as exc:
                raise opts.error("sampling_interval", str(exc)) from None
        return OpcuaOptions(url=url, nodes=tuple(nodes), sampling_interval=sampling,
                            timeout=opts.number("timeout", 4.0))

    @classmethod
    def columns(cls, options: OpcuaOptions) -> list[str]:
        return [n.name for n in options.nodes]

    @classmethod
    def describe(cls, options: OpcuaOptions) -> str:
        return f"{options.url}: " + ", ".join(f"{n.name} ({n.node})" for n in options.nodes)

    async def session(self) -> None:
        from asyncua import Client

        opts: OpcuaOptions = self.options
        client = Client(opts.url, timeout=opts.timeout, watchdog_intervall=HEALTH_CHECK)
        await client.connect()
        try:
            latest: dict[str, Any] = {n.name: None for n in opts.nodes}
            handler = _Snapshots(self, latest, [client.get_node(n.node) for n in opts.nodes])
            subscription = await client.create_subscription(self.interval * 1000, handler)
            sampling = (opts.sampling_interval or self.interval) * 1000
            results = await subscription.subscribe_data_change(handler.nodes, sampling_interval=sampling)
            for node, result in zip(opts.nodes, results if isinstance(results, list) else [results], strict=True):
                if not isinstance(result, int):  # a StatusCode: the server refused this node
                    raise ValueError(f"cannot subscribe to {node.name} ({node.node}): {result}")
            self.connected()
            while not await self.wait_stopping(HEALTH_CHECK):
                await client.check_connection()  # raises once the watchdog saw the connection die
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone already: nothing to release
                await asyncio.wait_for(client.disconnect(), opts.timeout)


class _Snapshots:
    """asyncua data-change handler: update the latest values, emit one row per notification batch."""

    def __init__(self, connector: OpcuaConnector, latest: dict[str, Any], nodes: list) -> None:
        self.connector = connector
        self.latest = latest
        self.nodes = nodes
        self._names = {node.nodeid: name for node, name in zip(nodes, latest, strict=True)}
        self._pending = False

    def datachange_notification(self, node: Any, value: Any, _data: Any) -> None:
        self.latest[self._names[node.nodeid]] = value
        if not self._pending:  # notifications of one publish arrive back to back: one row for all
            self._pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._pending = False
        self.connector.emit(dict(self.latest), time.time_ns() // 1_000_000)
