"""A `format = "sparkplug"` stream: Arros as a Sparkplug B host application (Sparkplug 3.0).

Per micro-batch: topics are split (cached per topic), payloads parsed in one protobuf call
(`payloads.parse_payloads`), then one pass in arrival order keeps the host state per edge node:

- NBIRTH/DBIRTH register metric names, aliases and datatypes. A birth that gives one alias to two
  metrics is refused (a dead letter saying which) and leaves the node (device) unborn;
- NDATA resolves aliases against that node's NBIRTH only, DDATA against its device's DBIRTH only (a
  device reusing an alias of its node cannot rename the node's metrics);
- NDEATH (when its bdSeq matches the NBIRTH's) and DDEATH mark the node/device offline and yield one
  row per known metric with `is_null = true`;
- `seq` (0-255) is tracked per edge node. A gap stays open for `reorder_timeout` waiting for the late
  message; if it is still open then, or data arrives for a node or device without a birth, the host
  publishes NCMD `Node Control/Rebirth` = true: at most once per `reorder_timeout` per node, and at most
  `REBIRTHS_PER_SECOND` (burst `REBIRTH_BURST`) over all nodes, so a flood of messages from never-born
  nodes cannot turn into a flood of commands. Requests held back wait in a queue, oldest first (a node
  asked before goes to its back), and go out as the rate allows.

The host state is bounded: it counts its bytes (`state_bytes`, an estimate per node and per metric) and,
past `max_state_bytes`, forgets the least recently heard nodes, never-born ones first (a forgotten node
is asked for a rebirth when it is heard again). 20,000 never-born nodes cost a few MB, not unbounded.

Rows are emitted at once (data is not held back while a gap is open). Column values are gathered per
metric in one tight loop; signed integers, per-message columns and topic metadata are then built
per column with numpy and Arrow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from arros_mqtt.config import StreamConfig
from arros_mqtt.core.errors import DecodeError
from arros_mqtt.decode.sparkplug.datatypes import DATATYPE_NAMES
from arros_mqtt.decode.sparkplug.payloads import Payload, parse_payloads
from arros_mqtt.decode.stream_decoder import BadMessage
from arros_mqtt.vendor import sparkplug_b_pb2 as pb

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int, bool], None]

NAMESPACE = "spBv1.0"
DATA_TYPES = ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH")
IGNORED_TYPES = ("NCMD", "DCMD", "STATE")  # commands (ours included) and host STATE messages
REBIRTH_METRIC = "Node Control/Rebirth"
BOOLEAN = 11
REBIRTHS_PER_SECOND = 10.0  # rebirth NCMDs over all nodes (a token bucket) ...
REBIRTH_BURST = 50  # ... of this depth
MAX_STATE_BYTES = 32 * 1024 * 1024  # host state of one stream (`state_bytes`); least recently heard nodes go
NODE_BYTES = 700  # estimated bytes of a node's entry with its key and bookkeeping
METRIC_BYTES = 200  # ... and per metric registered (name, alias entries), plus the name's length

# Value kinds (which member of the metric's `value` oneof is set) -> value column.
_NONE, _INT, _DOUBLE, _BOOL, _STRING = 0, 1, 2, 3, 4
_KIND = {"int_value": _INT, "long_value": _INT, "float_value": _DOUBLE, "double_value": _DOUBLE,
         "boolean_value": _BOOL, "string_value": _STRING}
# Signed datatypes are sent as two's complement in uint32/uint64: reinterpret at their width.
_SIGNED = ((1, np.int8), (2, np.int16), (3, np.int32))
_MISSING = object()
_DATATYPE_NAMES = np.array((*DATATYPE_NAMES, "Unknown"), dtype=object)


@dataclass
class SparkplugStats:
    ignored: int = 0  # NCMD, DCMD, STATE messages seen on the stream's topics
    rebirth_requests: int = 0
    seq_gaps: int = 0
    unknown_aliases: int = 0  # metrics whose alias no birth defined (rows with metric = null)
    stale_deaths: int = 0  # NDEATHs whose bdSeq does not match the current NBIRTH (ignored)
    refused_births: int = 0  # births giving one alias to two metrics (dead letters)
    rebirths_waiting: int = 0  # requests queued behind REBIRTHS_PER_SECOND (sent oldest first)
    nodes: int = 0  # edge nodes the host keeps state for
    state_bytes: int = 0  # their estimated size
    evicted_nodes: int = 0  # forgotten past max_state_bytes


@dataclass
class _Node:
    """What the host knows about one edge node."""

    born: bool = False
    bdseq: int | None = None
    expected_seq: int | None = None
    missing: set[int] = field(default_factory=set)
    gap_deadline: float | None = None
    rebirth_requested_at: float = float("-inf")
    # device (None: the node itself) -> metric name -> (alias, datatype)
    metrics: dict[str | None, dict[str, tuple[int | None, int]]] = field(default_factory=dict)
    online_devices: set[str] = field(default_factory=set)
    # device (None: the node's NBIRTH) -> alias -> (name, datatype): each birth's aliases resolve its own data
    aliases: dict[str | None, dict[int, tuple[str, int]]] = field(default_factory=dict)
    state_bytes: int = NODE_BYTES


@dataclass(frozen=True)
class _Topic:
    group: str
    message_type: str
    node: str
    device: str | None

    @property
    def node_key(self) -> tuple[str, str]:
        return self.group, self.node


def parse_topic(topic: str) -> _Topic | None:
    """The topic's parts; None for messages a host reads but that carry no rows (commands, STATE)."""
    parts = topic.split("/")
    if len(parts) >= 2 and parts[0] == NAMESPACE and parts[1] == "STATE":
        return None
    if parts[0] != NAMESPACE or len(parts) not in (4, 5) or not all(parts):
        raise DecodeError(f"not a Sparkplug B topic (expected {NAMESPACE}/group/TYPE/edge_node[/device])")
    group, message_type, node = parts[1], parts[2], parts[3]
    device = parts[4] if len(parts) == 5 else None
    if message_type in IGNORED_TYPES:
        return None
    if message_type not in DATA_TYPES:
        raise DecodeError(f"unknown Sparkplug message type {message_type!r}")
    if message_type.startswith("D") != (device is not None):
        raise DecodeError(f"{message_type} topics {'need' if device is None else 'have no'} a device level")
    return _Topic(group, message_type, node, device)


def rebirth_request(now_ms: int) -> bytes:
    """The NCMD payload asking an edge node to publish its births again."""
    payload = Payload(timestamp=now_ms)
    payload.metrics.add(name=REBIRTH_METRIC, timestamp=now_ms, datatype=BOOLEAN, boolean_value=True)
    return payload.SerializeToString()


class _Rows:
    """Column lists for one micro-batch: per metric, and per message (spread to rows at the end)."""

    def __init__(self) -> None:
        self.message_index: list[int] = []
        self.metric: list[str | None] = []
        self.alias: list[int | None] = []
        self.timestamp: list[int] = []
        self.datatype: list[int] = []
        self.is_null: list[bool] = []
        self.quality: list[int | None] = []
        self.kind: list[int] = []
        self.value: list[object] = []


class SparkplugDecoder:
    """Decodes a sparkplug stream's micro-batches into rows; publishes rebirth requests."""

    def __init__(self, stream: StreamConfig, publish: Publish, max_state_bytes: int = MAX_STATE_BYTES) -> None:
        self.stream = stream
        self.schema = stream.full_schema()
        self.reorder_timeout = stream.reorder_timeout
        self.max_state_bytes = max_state_bytes
        self.stats = SparkplugStats()
        self._publish = publish
        self._nodes: dict[tuple[str, str], _Node] = {}  # least recently heard first
        self._wanted: dict[tuple[str, str], tuple[_Node, str]] = {}  # nodes to ask (oldest first): state, why
        self._tokens = float(REBIRTH_BURST)
        self._tokens_at = float("-inf")
        self._topics: dict[str, _Topic | DecodeError | None] = {}

    @property
    def extra_fields(self) -> dict[str, int]:
        """Sparkplug's columns are fixed: no field is ever extra."""
        return {}

    def decode(
        self, topics: list[str], payloads: list[bytes], received_ms: list[int]
    ) -> tuple[pa.Table, list[BadMessage]]:
        bad: list[BadMessage] = []
        selected: list[int] = []
        parts: list[_Topic] = []
        for i, topic in enumerate(topics):
            parsed = self._topic(topic)
            if isinstance(parsed, DecodeError):
                bad.append(BadMessage(topic, payloads[i], received_ms[i], str(parsed)))
            elif parsed is None:
                self.stats.ignored += 1
            else:
                selected.append(i)
                parts.append(parsed)
        messages, failures = parse_payloads([payloads[i] for i in selected])
        for position, error in failures:
            i = selected[position]
            bad.append(BadMessage(topics[i], payloads[i], received_ms[i], error))
        rows = _Rows()
        seqs: list[int | None] = [None] * len(topics)
        for position, payload in enumerate(messages):
            if payload is not None:
                i = selected[position]
                try:
                    seqs[i] = self._message(i, parts[position], payload, received_ms[i], rows)
                except DecodeError as exc:
                    bad.append(BadMessage(topics[i], payloads[i], received_ms[i], str(exc)))
        self.tick(max(received_ms, default=0) / 1000)
        self._bound_state()
        try:
            return self._table(rows, topics, received_ms, seqs), bad
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            table, unfit = self._table_by_message(rows, topics, payloads, received_ms, seqs)
            return table, bad + unfit

    def _table_by_message(self, rows: _Rows, topics: list[str], payloads: list[bytes], received_ms: list[int],
                          seqs: list[int | None]) -> tuple[pa.Table, list[BadMessage]]:
        """A value Arrow cannot hold (a timestamp past int64, a metric name that is not UTF-8: found by
        fuzzing) fails the batch's table; build it message by message and dead-letter the ones that fail."""
        tables, bad = [], []
        for message in sorted(set(rows.message_index)):
            positions = [k for k, i in enumerate(rows.message_index) if i == message]
            own = _Rows()
            for name, values in vars(rows).items():
                setattr(own, name, [values[k] for k in positions])
            try:
                tables.append(self._table(own, topics, received_ms, seqs))
            except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
                error = f"a value does not fit its column: {str(exc).splitlines()[0][:200]}"
                bad.append(BadMessage(topics[message], payloads[message], received_ms[message], error))
        return (pa.concat_tables(tables) if tables else self.schema.empty_table()), bad

    def tick(self, now: float) -> None:
        """Ask for a rebirth where a sequence gap outlived the reorder timeout."""
        for key, node in self._nodes.items():
            if node.gap_deadline is not None and now >= node.gap_deadline:
                node.missing.clear()
                node.gap_deadline = None
                self._request_rebirth(key, node, now, "sequence gap not filled within the reorder timeout")
        self._send_rebirths(now)

    # -- host state ---------------------------------------------------------------------------------

    def _message(self, index: int, topic: _Topic, payload: Payload, received_ms: int, rows: _Rows) -> int | None:
        """Update the host state for one message and append its rows; returns its seq (None: none)."""
        node = self._nodes.pop(topic.node_key, None)  # re-inserted last: the most recently heard
        if node is None:
            node = _Node()
            self.stats.state_bytes += node.state_bytes
        self._nodes[topic.node_key] = node
        kind = topic.message_type
        now = received_ms / 1000
        seq = payload.seq if payload.HasField("seq") and kind != "NDEATH" else None
        default_ts = payload.timestamp or received_ms
        if kind in ("NBIRTH", "DBIRTH"):
            self._refuse_duplicate_aliases(topic, node, payload)
        if kind == "NBIRTH":
            self.stats.state_bytes -= node.state_bytes
            self._nodes[topic.node_key] = node = _Node(born=True, bdseq=_bdseq(payload),
                                                       rebirth_requested_at=node.rebirth_requested_at)
            self.stats.state_bytes += node.state_bytes
            node.expected_seq = None if seq is None else (seq + 1) % 256
            node.metrics[None] = {}
            self._metrics(index, payload, topic.node_key, None, now, default_ts, rows, register=True)
            return seq
        if kind == "NDEATH":
            death_bdseq = _bdseq(payload)
            if node.bdseq is not None and death_bdseq is not None and death_bdseq != node.bdseq:
                self.stats.stale_deaths += 1
                return None
            if node.born:
                for device, metrics in node.metrics.items():
                    if device is None or device in node.online_devices:
                        self._death_rows(index, metrics, default_ts, rows)
            node.born = False
            node.online_devices.clear()
            node.missing.clear()
            node.gap_deadline = None
            return None
        if not node.born:
            self._request_rebirth(topic.node_key, node, now, f"{kind} from an edge node without NBIRTH")
        elif seq is not None:
            self._check_seq(topic.node_key, node, seq, now)
        device = topic.device
        if kind == "DBIRTH":
            self._forget_device(node, device)
            node.online_devices.add(device)
            self._metrics(index, payload, topic.node_key, device, now, default_ts, rows, register=True)
        elif kind == "DDEATH":
            if device in node.online_devices:
                node.online_devices.discard(device)
                self._death_rows(index, node.metrics.get(device, {}), default_ts, rows)
        else:
            if device is not None and device not in node.online_devices and node.born:
                self._request_rebirth(topic.node_key, node, now, f"DDATA from device {device!r} without DBIRTH")
            self._metrics(index, payload, topic.node_key, device, now, default_ts, rows, register=False)
        return seq

    def _check_seq(self, key: tuple[str, str], node: _Node, seq: int, now: float) -> None:
        expected = node.expected_seq
        if expected is None or seq == expected:
            node.expected_seq = (seq + 1) % 256
        elif seq in node.missing:  # a late message filled (part of) the gap
            node.missing.discard(seq)
            if not node.missing:
                node.gap_deadline = None
        elif (seq - expected) % 256 < 128:  # ahead: the messages in between are missing (for now)
            self.stats.seq_gaps += 1
            node.missing.update((expected + i) % 256 for i in range((seq - expected) % 256))
            if node.gap_deadline is None:
                node.gap_deadline = now + self.reorder_timeout
            node.expected_seq = (seq + 1) % 256
            log.debug("edge node %s/%s: seq %d, expected %d", *key, seq, expected)

    def _refuse_duplicate_aliases(self, topic: _Topic, node: _Node, payload: Payload) -> None:
        """DecodeError (a dead letter) for a birth giving one alias to two metrics; the node (or device) it
        would have (re)born is left unborn, so its data asks for a rebirth instead of resolving wrongly."""
        names: dict[int, str] = {}
        for metric in payload.metrics:
            if not metric.HasField("alias"):
                continue
            if metric.alias in names:
                self.stats.refused_births += 1
                if topic.device is None:
                    self._forget_device(node, None)
                    node.born = False
                else:
                    self._forget_device(node, topic.device)
                    node.online_devices.discard(topic.device)
                raise DecodeError(f"{topic.message_type} refused: alias {metric.alias} is given to both "
                                  f"{names[metric.alias]!r} and {metric.name!r} (aliases must be unique)")
            names[metric.alias] = metric.name

    def _forget_device(self, node: _Node, device: str | None) -> None:
        """Drop what a birth of `device` (None: the node) registered, with its share of `state_bytes`."""
        metrics = node.metrics.pop(device, {})
        node.aliases.pop(device, None)
        freed = _metric_bytes(metrics)
        node.state_bytes -= freed
        self.stats.state_bytes -= freed

    def _bound_state(self) -> None:
        """Past `max_state_bytes`, forget least recently heard nodes, never-born ones first."""
        self.stats.nodes = len(self._nodes)
        if not self.max_state_bytes or self.stats.state_bytes <= self.max_state_bytes:
            return
        evicted = 0
        for unborn_only in (True, False):
            for key in [k for k, n in self._nodes.items() if not unborn_only or not n.born]:
                if self.stats.state_bytes <= self.max_state_bytes * 0.9:  # some room, so not every batch evicts
                    break
                self.stats.state_bytes -= self._nodes.pop(key).state_bytes
                self._wanted.pop(key, None)
                evicted += 1
        self.stats.evicted_nodes += evicted
        self.stats.nodes = len(self._nodes)
        log.warning("sparkplug stream %s: host state over %d bytes; forgot the %d least recently heard edge "
                    "nodes (never-born ones first); they are asked for a rebirth when heard again",
                    self.stream.name, self.max_state_bytes, evicted)

    def _request_rebirth(self, key: tuple[str, str], node: _Node, now: float, reason: str) -> None:
        """Queue a rebirth request (at most one per node per reorder timeout); `_send_rebirths` sends them."""
        if now - node.rebirth_requested_at < self.reorder_timeout or key in self._wanted:
            return
        self._wanted[key] = (node, reason)

    def _send_rebirths(self, now: float) -> None:
        """Send queued requests, oldest first, as the overall token bucket allows: a node asked goes to the
        back of the queue when it is due again, so a flood of nodes that never answer cannot starve others."""
        self._tokens = min(float(REBIRTH_BURST), self._tokens + max(0.0, now - self._tokens_at) * REBIRTHS_PER_SECOND)
        self._tokens_at = now
        while self._wanted and self._tokens >= 1:
            key, (node, reason) = next(iter(self._wanted.items()))
            del self._wanted[key]
            if self._nodes.get(key) is not node:
                continue  # reborn (an NBIRTH made a new state) or forgotten meanwhile
            self._tokens -= 1
            node.rebirth_requested_at = now
            self.stats.rebirth_requests += 1
            group, edge_node = key
            log.info("asking edge node %s/%s for a rebirth: %s", group, edge_node, reason)
            self._publish(f"{NAMESPACE}/{group}/NCMD/{edge_node}", rebirth_request(int(now * 1000)), 0, False)
        self.stats.rebirths_waiting = len(self._wanted)

    # -- rows ------------------------------------------------------------------------------------

    def _metrics(self, index: int, payload: Payload, key: tuple[str, str], device: str | None, now: float,
                 default_ts: int, rows: _Rows, register: bool) -> None:
        """One row per metric; births also register names, aliases and datatypes."""
        node = self._nodes[key]
        known = node.metrics.get(device) or {}
        aliases = node.aliases.setdefault(device, {}) if register else node.aliases.get(device, {})
        before = _metric_bytes(known) if register else 0
        unknown = 0
        m_index, m_metric, m_alias, m_ts = rows.message_index, rows.metric, rows.alias, rows.timestamp
        m_dt, m_null, m_quality, m_kind, m_value = rows.datatype, rows.is_null, rows.quality, rows.kind, rows.value
        for metric in payload.metrics:
            name = metric.name
            alias = metric.alias if metric.HasField("alias") else None
            datatype = metric.datatype
            if register:
                if name:
                    known[name] = (alias, datatype)
                    if alias is not None:
                        aliases[alias] = (name, datatype)
            elif name:
                entry = known.get(name)
                if entry is not None:
                    alias = entry[0] if alias is None else alias
                    datatype = datatype or entry[1]
            elif alias is not None:
                found = aliases.get(alias)
                if found is None:
                    unknown += 1
                    name = None
                else:
                    name, birth_type = found
                    datatype = datatype or birth_type
            else:
                name = None
            value_field = metric.WhichOneof("value")
            m_index.append(index)
            m_metric.append(name)
            m_alias.append(alias)
            m_ts.append(metric.timestamp or default_ts)
            m_dt.append(datatype)
            m_null.append(metric.is_null)
            m_quality.append(_quality(metric) if metric.HasField("properties") else None)
            kind = _KIND.get(value_field, _NONE)
            m_kind.append(kind)
            m_value.append(getattr(metric, value_field) if kind else None)
        if register:
            node.metrics[device] = known
            grown = _metric_bytes(known) - before
            node.state_bytes += grown
            self.stats.state_bytes += grown
        if unknown:
            self.stats.unknown_aliases += unknown
            self._request_rebirth(key, node, now, f"{unknown} metrics with an alias no birth defined")

    def _death_rows(self, index: int, metrics: dict[str, tuple[int | None, int]], ts: int, rows: _Rows) -> None:
        for name, (alias, datatype) in metrics.items():
            rows.message_index.append(index)
            rows.metric.append(name)
            rows.alias.append(alias)
            rows.timestamp.append(ts)
            rows.datatype.append(datatype)
            rows.is_null.append(True)
            rows.quality.append(None)
            rows.kind.append(_NONE)
            rows.value.append(None)

    def _topic(self, topic: str) -> _Topic | DecodeError | None:
        cached = self._topics.get(topic, _MISSING)
        if cached is _MISSING:
            try:
                cached = parse_topic(topic)
            except DecodeError as exc:
                cached = exc
            if len(self._topics) >= 100_000:
                self._topics.clear()
            self._topics[topic] = cached
        return cached  # type: ignore[return-value]

    def _table(self, rows: _Rows, topics: list[str], received_ms: list[int], seqs: list[int | None]) -> pa.Table:
        n = len(rows.message_index)
        if n == 0:
            return self.schema.empty_table()
        index = pa.array(rows.message_index, pa.int32())
        per_message = self._message_columns(topics, received_ms, seqs)
        kinds = np.array(rows.kind, dtype=np.int8)
        values = np.array(rows.value, dtype=object)
        datatypes = np.array(rows.datatype, dtype=np.int64)
        datatypes[(datatypes < 0) | (datatypes >= len(DATATYPE_NAMES))] = len(DATATYPE_NAMES)
        columns: dict[str, pa.Array] = {
            "metric": pa.array(rows.metric, pa.string()),
            "alias": pa.array(rows.alias, pa.uint64()),
            "timestamp": pa.array(rows.timestamp, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "datatype": pa.array(_DATATYPE_NAMES[datatypes], pa.string()),
            "is_null": pa.array(rows.is_null, pa.bool_()),
            "quality": pa.array(rows.quality, pa.int32()),
            "value_double": _typed(values, kinds == _DOUBLE, pa.float64()),
            "value_int": _integers(values, kinds == _INT, datatypes),
            "value_bool": _typed(values, kinds == _BOOL, pa.bool_()),
            "value_string": _typed(values, kinds == _STRING, pa.string()),
        }
        arrays = [columns[f.name] if f.name in columns else per_message[f.name].take(index) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _message_columns(self, topics: list[str], received_ms: list[int], seqs: list[int | None]) -> dict:
        parsed = [self._topics.get(t) for t in topics]
        parts = [p if isinstance(p, _Topic) else None for p in parsed]
        topic_array = pa.array(topics, pa.string())
        columns = {
            "group_id": pa.array([p.group if p else None for p in parts], pa.string()),
            "edge_node_id": pa.array([p.node if p else None for p in parts], pa.string()),
            "device_id": pa.array([p.device if p else None for p in parts], pa.string()),
            "message_type": pa.array([p.message_type if p else None for p in parts], pa.string()),
            "seq": pa.array(seqs, pa.int64()),
            "_topic": topic_array,
            "_received_at": pa.array(received_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        }
        if self.stream.topic is not None:
            columns.update(self.stream.topic.capture_columns(topic_array))
        return columns


def _metric_bytes(metrics: dict[str, tuple[int | None, int]]) -> int:
    """The estimated bytes a birth's registered metrics (names and aliases) take in the host state."""
    return sum(METRIC_BYTES + len(name) for name in metrics)


def _bdseq(payload: Payload) -> int | None:
    for metric in payload.metrics:
        if metric.name == "bdSeq":
            kind = metric.WhichOneof("value")
            return int(getattr(metric, kind)) if kind in ("int_value", "long_value") else None
    return None


def _quality(metric: pb.Payload.Metric) -> int | None:
    properties = metric.properties
    for position, key in enumerate(properties.keys):
        if key == "Quality" and position < len(properties.values):
            value = properties.values[position]
            kind = value.WhichOneof("value")
            if kind in ("int_value", "long_value"):  # Int32: two's complement in a uint32
                low = getattr(value, kind) & 0xFFFFFFFF
                return low - (1 << 32) if low >= 1 << 31 else low
    return None


def _typed(values: np.ndarray, mask: np.ndarray, kind: pa.DataType) -> pa.Array:
    if not mask.any():
        return pa.nulls(len(values), kind)
    column = np.full(len(values), None, dtype=object)
    column[mask] = values[mask]
    return pa.array(column, kind)


def _integers(values: np.ndarray, mask: np.ndarray, datatypes: np.ndarray) -> pa.Array:
    """uint32/uint64 wire values -> int64, reading IntN datatypes as N-bit two's complement."""
    if not mask.any():
        return pa.nulls(len(values), pa.int64())
    raw = np.zeros(len(values), dtype=np.uint64)
    raw[mask] = values[mask].astype(np.uint64)
    signed = raw.view(np.int64).copy()
    for code, width in _SIGNED:
        selected = mask & (datatypes == code)
        if selected.any():
            signed[selected] = raw[selected].astype(width)
    return pa.array(signed, pa.int64(), mask=~mask)
