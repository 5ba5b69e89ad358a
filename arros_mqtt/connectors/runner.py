"""The configured connectors, running: readings -> rows of their stream and/or JSON on their topic.

Rows for a stream are Arrow tables with the stream's full schema (declared columns cast from the
readings, `_connector`, `_received_at` = read time), handed to `submit_table`, which the service
drains on its engine thread: no broker hop. With `output`, each reading is also published as one
JSON object `{column: value, ..., "connector": NAME, "ts": "2026-...Z"}` (for a connector on a
separate gateway box, `arros connector NAME`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, cast

import orjson
import pyarrow as pa

from arros_mqtt.config import Config, ConnectorConfig
from arros_mqtt.connectors.base import Connector
from arros_mqtt.core.connector_kinds import load_kind
from arros_mqtt.core.errors import DecodeError
from arros_mqtt.decode.codec import conform_rows

log = logging.getLogger("arros.connectors")
SubmitTable = Callable[[str, pa.Table], None]
Publish = Callable[[str, bytes, int, bool], None]


class ConnectorSet:
    """Builds, starts and stops the connectors of a config (all of them, or those named)."""

    def __init__(self, config: Config, submit_table: SubmitTable | None, publish: Publish | None,
                 names: list[str] | None = None) -> None:
        self.config = config
        self._submit = submit_table
        self._publish = publish
        self.connectors: dict[str, Connector] = {}
        for name in names or list(config.connectors):
            spec = config.connectors[name]
            kind = cast("type[Connector]", load_kind(spec.kind))
            self.connectors[name] = kind(name, spec.options, spec.interval, self._emitter(spec))

    def start(self) -> None:
        for name, connector in self.connectors.items():
            connector.start()
            log.info("connector %s started: %s", name, connector.describe(connector.options))

    def stop(self, timeout: float = 10.0) -> None:
        for connector in self.connectors.values():
            connector.stop(timeout)
        for name, connector in self.connectors.items():
            s = connector.stats
            log.info("connector %s: %d readings, %d connects, %d connection failures, %d read errors", name,
                     s.reads, s.connects, s.connection_failures, s.errors)

    def _emitter(self, spec: ConnectorConfig) -> Callable[[dict[str, Any], int], None]:
        stream = self.config.streams[spec.stream] if spec.stream and self._submit else None
        schema = stream.schema if stream else None
        full_schema = stream.full_schema() if stream else None
        publish = self._publish if spec.output else None

        def emit(values: dict[str, Any], read_ms: int) -> None:
            if schema is not None:
                try:
                    table = reading_table(values, read_ms, spec.name, schema, full_schema)
                except DecodeError as exc:
                    log.warning("connector %s: reading does not fit stream %s: %s", spec.name, spec.stream, exc)
                else:
                    self._submit(spec.stream, table)
            if publish is not None:
                publish(spec.output, reading_json(values, read_ms, spec.name), spec.qos, False)

        return emit


def reading_table(values: dict[str, Any], read_ms: int, connector: str, schema: pa.Schema,
                  full_schema: pa.Schema) -> pa.Table:
    """One reading as one row of the stream: declared columns cast (DecodeError if one cannot be)."""
    declared = conform_rows([values], schema)
    columns = [*declared.columns, pa.array([connector], pa.string()),
               pa.array([read_ms], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))]
    return pa.Table.from_arrays(columns, schema=full_schema)


def reading_json(values: dict[str, Any], read_ms: int, connector: str) -> bytes:
    read_at = dt.datetime.fromtimestamp(read_ms / 1000, tz=dt.UTC)
    ts = read_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({**values, "connector": connector, "ts": ts})
