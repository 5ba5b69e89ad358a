"""Modbus TCP (pymodbus client): poll a register map every `interval`, one row per poll.

Registers of the same table that lie close together are read in one request (up to 125 registers
or 2000 bits, holes of up to 16 registers read and ignored), so a map of 40 values usually costs one
or two round trips. Words are big-endian (Modbus); 32/64-bit values take `word_order` = "big" (most
significant word first, the default) or "little". `value * scale + offset` applies when either is set.

```toml
[connectors.press1]
kind = "modbus"
host = "127.0.0.1"
port = 502
unit = 1
interval = "100ms"
stream = "press"
registers = [
  { name = "temp", table = "holding", address = 0, type = "int16", scale = 0.1, unit = "°C" },
  { name = "running", table = "coil", address = 0 },
]
```
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from typing import Any

from arros_mqtt.connectors.base import Connector
from arros_mqtt.connectors.options import Options

TABLES = ("holding", "input", "coil", "discrete")
BIT_TABLES = ("coil", "discrete")
# type -> (registers per value, struct format)
TYPES = {"int16": (1, ">h"), "uint16": (1, ">H"), "int32": (2, ">i"), "uint32": (2, ">I"), "float32": (2, ">f"),
         "float64": (4, ">d")}
MAX_REGISTERS, MAX_BITS, MAX_HOLE = 125, 2000, 16


@dataclass(frozen=True)
class Register:
    name: str
    table: str
    address: int
    type: str = "uint16"  # "bool" for coils and discrete inputs
    count: int = 1  # consecutive values; more than 1 makes a list column
    word_order: str = "big"
    scale: float | None = None
    offset: float | None = None
    unit: str | None = None  # engineering unit, shown by `arros check`

    @property
    def width(self) -> int:
        """Registers (or bits) this entry spans."""
        return self.count if self.table in BIT_TABLES else TYPES[self.type][0] * self.count

    def value(self, words: list[int] | list[bool]) -> Any:
        """The value(s) from this entry's registers or bits (exactly `width` of them)."""
        if self.table in BIT_TABLES:
            values = [bool(bit) for bit in words]
        else:
            size, fmt = TYPES[self.type]
            values = []
            for i in range(self.count):
                chunk = words[i * size:(i + 1) * size]
                if self.word_order == "little":
                    chunk = chunk[::-1]
                number = struct.unpack(fmt, b"".join(w.to_bytes(2, "big") for w in chunk))[0]
                if self.scale is not None or self.offset is not None:
                    number = number * (1.0 if self.scale is None else self.scale) + (self.offset or 0.0)
                values.append(number)
        return values[0] if self.count == 1 else values


@dataclass(frozen=True)
class ModbusOptions:
    host: str
    port: int
    unit: int
    timeout: float
    registers: tuple[Register, ...]


@dataclass(frozen=True)
class Span:
    """One read request: `count` registers or bits of `table` from `address`, and the entries in it."""

    table: str
    address: int
    count: int
    registers: tuple[Register, ...]


def plan_reads(registers: tuple[Register, ...]) -> list[Span]:
    """Group entries into as few requests as the protocol limits allow."""
    spans: list[Span] = []
    for table in TABLES:
        entries = sorted((r for r in registers if r.table == table), key=lambda r: r.address)
        limit = MAX_BITS if table in BIT_TABLES else MAX_REGISTERS
        current: list[Register] = []
        start = end = 0
        for entry in entries:
            entry_end = entry.address + entry.width
            if current and entry.address <= end + MAX_HOLE and max(end, entry_end) - start <= limit:
                current.append(entry)
                end = max(end, entry_end)
                continue
            if current:
                spans.append(Span(table, start, end - start, tuple(current)))
            current, start, end = [entry], entry.address, entry_end
        if current:
            spans.append(Span(table, start, end - start, tuple(current)))
    return spans


class ModbusConnector(Connector):
    kind = "modbus"
    requires = "pymodbus"
    option_keys = ("host", "port", "unit", "timeout", "registers")

    @classmethod
    def read_options(cls, opts: Options) -> ModbusOptions:
        registers = tuple(_register(item) for item in opts.items("registers"))
        names = [r.name for r in registers]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise opts.error(f"registers[{i}].name", f"{name!r} appears twice")
        return ModbusOptions(
            host=opts.get("host", str, required=True),
            port=opts.integer("port", 502, minimum=1, maximum=65535),
            unit=opts.integer("unit", 1, minimum=0, maximum=255),
            timeout=opts.number("timeout", 3.0),
            registers=registers,
        )

    @classmethod
    def columns(cls, options: ModbusOptions) -> list[str]:
        return [r.name for r in options.registers]

    @classmethod
    def describe(cls, options: ModbusOptions) -> str:
        names = ", ".join(f"{r.name} [{r.unit}]" if r.unit else r.name for r in options.registers)
        return f"modbus://{options.host}:{options.port} unit {options.unit}: {names}"

    async def session(self) -> None:
        from pymodbus.client import AsyncModbusTcpClient
        from pymodbus.exceptions import ModbusIOException

        opts: ModbusOptions = self.options
        spans = plan_reads(opts.registers)
        client = AsyncModbusTcpClient(opts.host, port=opts.port, timeout=opts.timeout, retries=0, reconnect_delay=0)
        try:
            if not await client.connect():
                raise ConnectionError(f"cannot connect to {opts.host}:{opts.port}")
            self.connected()
            loop = asyncio.get_running_loop()
            next_poll = loop.time()
            while not self.stopping.is_set():
                read_ms = time.time_ns() // 1_000_000
                values: dict[str, Any] = {}
                failed = None
                for span in spans:
                    result = await _read(client, span, opts.unit)
                    if isinstance(result, ModbusIOException) or not client.connected:
                        raise ConnectionError(f"{opts.host}:{opts.port}: {result}")
                    if result.isError():  # an exception response: the device answered, the map is wrong
                        failed = f"{span.table} {span.address}..{span.address + span.count - 1}: {result}"
                        break
                    data = result.bits if span.table in BIT_TABLES else result.registers
                    for entry in span.registers:
                        offset = entry.address - span.address
                        values[entry.name] = entry.value(data[offset:offset + entry.width])
                if failed is None:
                    self.emit(values, read_ms)
                else:
                    self.stats.errors += 1
                    self.stats.last_error = failed
                next_poll += self.interval
                now = loop.time()
                if next_poll < now:  # overran: skip the missed slots rather than bursting
                    next_poll = now
                if await self.wait_stopping(next_poll - now):
                    return
        finally:
            client.close()


async def _read(client: Any, span: Span, unit: int) -> Any:
    read = {"holding": client.read_holding_registers, "input": client.read_input_registers,
            "coil": client.read_coils, "discrete": client.read_discrete_inputs}[span.table]
    return await read(span.address, count=span.count, device_id=unit)


def _register(item: Options) -> Register:
    item.only("name", "table", "address", "type", "count", "word_order", "scale", "offset", "unit")
    table = item.choice("table", TABLES, "holding")
    if table in BIT_TABLES:
        kind = item.choice("type", ("bool",), "bool")
        for key in ("word_order", "scale", "offset"):
            if key in item.data:
                raise item.error(key, f"does not apply to {table} (bits are booleans)")
    else:
        kind = item.choice("type", tuple(TYPES), "uint16")
    register = Register(
        name=item.get("name", str, required=True),
        table=table,
        address=item.integer("address", required=True, maximum=65535),
        type=kind,
        count=item.integer("count", 1, minimum=1),
        word_order=item.choice("word_order", ("big", "little"), "big"),
        scale=item.number("scale"),
        offset=item.number("offset"),
        unit=item.get("unit", str),
    )
    limit = MAX_BITS if table in BIT_TABLES else MAX_REGISTERS
    if register.width > limit:
        raise item.error("count", f"spans {register.width} {'bits' if table in BIT_TABLES else 'registers'}; "
                         f"one request reads at most {limit}")
    if register.address + register.width > 65536:
        raise item.error("address", "the entry runs past address 65535")
    return register
