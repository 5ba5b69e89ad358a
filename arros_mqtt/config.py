"""The TOML config file (docs/config.md) as frozen dataclasses.

Loading is strict: an unknown key, a wrong type, a bad duration or Arrow type name is a ConfigError
that names the file, the dotted key and what is wrong, so `arros check` can print one line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from arros_mqtt.core.arrow_types import parse_arrow_type
from arros_mqtt.core.durations import parse_duration
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.core.names import NAME_RULE, valid_name
from arros_mqtt.core.object_url import FORMS, parse_object_url
from arros_mqtt.core.topics import OutputTemplate, TopicPattern, reserved_output

# The fixed columns of a `format = "sparkplug"` stream: one row per metric. Topic captures, `_topic` and
# `_received_at` follow them, as in any stream (docs/payloads.md).
SPARKPLUG_SCHEMA = pa.schema([
    ("group_id", pa.string()),
    ("edge_node_id", pa.string()),
    ("device_id", pa.string()),  # null for node-level metrics
    ("message_type", pa.string()),  # NBIRTH, NDATA, NDEATH, DBIRTH, DDATA, DDEATH
    ("seq", pa.int64()),
    ("metric", pa.string()),  # the name, also when the message carried only the alias
    ("alias", pa.uint64()),
    ("timestamp", pa.timestamp("ms", tz="UTC")),  # the metric's, else the payload's
    ("datatype", pa.string()),  # Sparkplug type name, e.g. "Double"
    ("is_null", pa.bool_()),
    ("quality", pa.int32()),  # the metric's "Quality" property, if any
    ("value_double", pa.float64()),
    ("value_int", pa.int64()),
    ("value_bool", pa.bool_()),
    ("value_string", pa.string()),
])

FORMATS_IN = ("json", "msgpack", "sparkplug", "csv", "influx", "arrow")
FORMATS_IMPLEMENTED_IN = ("json", "msgpack", "sparkplug", "csv", "influx", "arrow")
FORMATS_OUT = ("json", "msgpack", "arrow")
FORMATS_IMPLEMENTED_OUT = ("json", "msgpack", "arrow")
# Stream options that only mean something for some formats; anywhere else they are an error.
FORMAT_OPTIONS = {"header": ("csv",), "measurement": ("influx",), "precision": ("influx",),
                  "host_id": ("sparkplug",), "reorder_timeout": ("sparkplug",)}
INFLUX_COLUMNS = ("_measurement", "_time")  # what every influx row carries besides its tags and fields
INFLUX_PRECISIONS = ("ns", "us", "ms", "s")
METADATA_COLUMNS = ("_topic", "_received_at", "_connector")
CONNECTOR_KEYS = ("kind", "stream", "output", "qos", "interval")  # the rest of [connectors.X] is the kind's
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*((?:[KMGT]I?)?B)$", re.IGNORECASE)
_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass(frozen=True)
class BrokerConfig:
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = field(default_factory=lambda: f"arros-{socket.gethostname()}")
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive: int = 30
    session_expiry: float = 3600.0
    clean_start: bool = False
    max_packet_size: int = 0  # bytes of a PUBLISH Arros sends at most (0: the broker's CONNACK limit, or MQTT's)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls_ca is not None


@dataclass(frozen=True)
class EmbeddedConfig:
    listen: str = "127.0.0.1:1883"
    broker_config: str | None = None  # an amqtt YAML file (auth, ACLs, more listeners); transport/embedded_broker.py


@dataclass(frozen=True)
class EngineConfig:
    batch_max_rows: int = 10000
    batch_max_delay: float = 0.02
    state_dir: str = "./arros-state"
    batch_max_bytes: int = 1024 * 1024  # payload bytes per micro-batch (arrays of readings stay bounded)
    batching: str = "adaptive"  # "adaptive": a batch closes when the engine is free; "delay": after batch_max_delay
    batch_linger: float = 0.002  # adaptive: ... and its oldest message has waited this long (fewer, larger rounds)
    # what one subscription may cost per micro-batch (engine/run_bounds.py); over them it is paused; 0 = no limit
    max_result_rows: int = 250_000
    max_result_bytes: int = 256 * 1024 * 1024
    max_batch_seconds: float = 10.0
    sql_memory: int = 1024 * 1024 * 1024  # DataFusion's memory pool: joins, sorts, aggregates
    workers: int = 1  # member processes `arros run` starts on this machine (docs/cluster.md)


@dataclass(frozen=True)
class ArchiveConfig:
    dir: str = "./archive"
    roll_rows: int = 1_000_000
    roll_interval: float = 300.0
    compression: str = "zstd"
    retention: float | None = None  # seconds; partitions older than this are deleted
    # "s3://bucket/prefix", "gs://bucket/prefix" or "az://container/prefix": each rolled file is uploaded
    # (egress/archive_upload.py, through the filesystem of egress/object_store.py)
    upload: str | None = None
    endpoint_override: str | None = None  # e.g. "http://127.0.0.1:9000": an S3-compatible server, an emulator
    region: str | None = None  # s3
    access_key: str | None = None  # s3; None: the standard AWS environment / credential chain
    secret_key: str | None = None
    anonymous: bool = False  # s3, gs: no credentials at all (public buckets, emulators)
    account_name: str | None = None  # az; None: the URL's @ACCOUNT, or the AZURE_STORAGE_* environment
    account_key: str | None = None  # az; None with no sas_token: the environment, then DefaultAzureCredential
    sas_token: str | None = None  # az
    keep_local: bool = True  # False: a file is deleted locally once uploaded


@dataclass(frozen=True)
class ControlConfig:
    prefix: str = "arros"
    max_subscriptions: int = 100  # config-file and run-time ones together; 0 = no limit
    max_state_bytes: int = 256 * 1024 * 1024  # per subscription (windowed/running state); 0 = no limit
    max_output_rate: int = 100_000  # result messages per second per subscription; 0 = no limit
    status_interval: float = 5.0  # seconds between {prefix}/status/{name} messages
    lagging_after: float = 1.0  # health says "lagging" once input or results have waited this long


@dataclass(frozen=True)
class DurabilityConfig:
    """`[durability]`: the write-ahead log, checkpoints, the output queue and shutdown (docs/durability.md)."""

    wal: bool = True  # False: no log; messages are acknowledged on receipt
    sync: float | None = 0.0  # 0: fsync every micro-batch before acking; > 0: at most this often; None: never
    checkpoint_interval: float = 60.0
    output_memory: int = 64 * 1024 * 1024  # results waiting for the broker, in memory ...
    output_spill: int = 1024 * 1024 * 1024  # ... then on disk under state_dir/outbox; past both the engine waits
    shutdown_timeout: float = 10.0


@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None = None  # "127.0.0.1:9108" serves Prometheus metrics at /metrics


WEB_DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True)
class WebConfig:
    """`[web]`: the web console (docs/web.md). `listen` None means the default address, which, unlike one
    given, is skipped with a warning when another program holds it; `password` None on a non-loopback
    address means a token generated and printed at start."""

    enabled: bool = True
    listen: str | None = None
    password: str | None = None

    @property
    def address(self) -> str:
        return self.listen or WEB_DEFAULT_LISTEN


@dataclass(frozen=True)
class LiveConfig:
    """What the live views (Flight SQL `live.*`, the web console) keep in memory: recent rows per stream,
    latest results per subscription, recent dead letters."""

    enabled: bool = True
    max_rows: int = 100_000  # per stream: the most recent rows ...
    max_bytes: int = 64 * 1024 * 1024  # ... and at most this many bytes of them
    result_rows: int = 10_000  # per subscription: its latest results (rows, or one row per group key)
    dead_letters: int = 1_000  # the most recent dead letters of all streams


@dataclass(frozen=True)
class FlightConfig:
    """`[flight]`: the Arrow Flight SQL endpoint of `arros run` (docs/flight.md)."""

    enabled: bool = True
    listen: str = "127.0.0.1:31337"
    listen_set: bool = False  # written in the config: failing to bind it stops the start (the default only warns)
    username: str | None = None  # with password: basic auth, exchanged for a bearer token
    password: str | None = None
    tls_cert: str | None = None  # PEM files; both or neither
    tls_key: str | None = None


@dataclass(frozen=True)
class ClusterConfig:
    """`[cluster]`: instances with the same `group` share each stream's subscription through the broker
    (`$share/{group}/{filter}`), so each message reaches one member (docs/cluster.md)."""

    group: str | None = None
    member: str | None = None  # this instance's name in the group; None: derived from the client id


# What a group refuses, and why: each member sees only its share of a stream.
GROUP_REFUSES_AGGREGATES = ("windows and running aggregates in a [cluster] group are not supported yet: each member "
                            "sees only its share of the stream, so its results would be partial; run this "
                            "subscription on an instance outside the group (docs/cluster.md)")
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def member_name(config: Config) -> str:
    """This instance's name in its group: `[cluster] member`, else its client id (itself derived from
    `state_dir` unless set), made a valid topic level."""
    if config.cluster.member is not None:
        return config.cluster.member
    client_id = config.broker.client_id if config.broker is not None else default_client_id(config.engine.state_dir)
    return re.sub(r"[/+#]", "_", client_id)


def check_cluster(config: Config) -> None:
    """What a group needs of the rest of the config, checked once `--broker` is applied (ConfigError)."""
    if config.cluster.group is None:
        return
    if config.broker is None:
        raise ConfigError(config.source, "cluster.group", "a group needs an external broker (members share its "
                          "subscriptions): add a [broker] table or pass --broker; embedded mode runs alone")
    if config.connectors:  # every member would poll the PLC: each reading N times
        first = next(iter(config.connectors))
        raise ConfigError(config.source, f"connectors.{first}", "connectors do not run in a [cluster] group (every "
                          "member would read the device); run it alone with `arros connector` publishing to a "
                          "topic the group's streams subscribe")
    if config.uplinks:  # every member's uplink would subscribe to every member's results: each sent N times
        raise ConfigError(config.source, f"uplinks.{next(iter(config.uplinks))}", "uplinks do not run in a [cluster] "
                          "group (each member would forward every result); run them in one `arros run` of their own "
                          "beside the group, a config with the [broker] and [uplinks] only")
    for name, stream in config.streams.items():
        if stream.format == "sparkplug":
            raise ConfigError(config.source, f"streams.{name}.format", "sparkplug streams are not supported in a "
                              "[cluster] group (births, aliases and seq numbers of an edge node must reach one "
                              "decoder in order)")
        if stream.infers_schema:
            raise ConfigError(config.source, f"streams.{name}.schema", "is required in a [cluster] group (each "
                              "member would infer its own schema from its own first messages)")


@dataclass(frozen=True)
class StreamConfig:
    name: str
    topic: TopicPattern | None
    format: str = "json"
    schema: pa.Schema | None = None
    event_time: str | None = None
    watermark: float = 0.0
    idle_timeout: float = 30.0  # seconds without rows before the watermark follows the wall clock; 0 = never
    max_future: float = 60.0  # event time at most this far (s) ahead of arrival, else dead-lettered; 0 = no bound
    max_past: float = 0.0  # event time at most this far (s) behind arrival, else dead-lettered; 0 = no bound
    qos: int = 1
    archive: bool = False
    host_id: str | None = None  # sparkplug: the host application id (STATE topic)
    reorder_timeout: float = 2.0  # sparkplug: how long a seq gap may stay open before a rebirth request
    header: bool = False  # csv: each message starts with a line of column names
    measurement: str | None = None  # influx: keep only lines of this measurement
    precision: str = "ns"  # influx: unit of the line timestamps

    @property
    def infers_schema(self) -> bool:
        """Declared without a schema: it is inferred from the first micro-batch, then fixed."""
        return self.schema is None and self.topic is not None

    def full_schema(self) -> pa.Schema:
        """Declared columns, then topic captures and `_topic` (`_connector` for a connector-fed stream
        without topic), then `_received_at`."""
        fields = list(self.schema or [])
        if self.topic is not None:
            fields += [pa.field(name, pa.string()) for name, _ in self.topic.captures]
            fields.append(pa.field("_topic", pa.string()))
        else:
            fields.append(pa.field("_connector", pa.string()))
        fields.append(pa.field("_received_at", pa.timestamp("ms", tz="UTC")))
        return pa.schema(fields)


@dataclass(frozen=True)
class TableConfig:
    """A lookup table (`[tables.NAME]`): a CSV or Parquet file that subscriptions may join by `name`,
    reloaded when the file changes (docs/sql.md)."""

    name: str
    path: str


@dataclass(frozen=True)
class SubscriptionConfig:
    name: str
    sql: str
    output: OutputTemplate | None = None
    format: str = "json"
    qos: int | None = None  # None: 2 for windowed subscriptions with the log on in client mode, else 1
    retain: bool = False
    batch: bool = False
    timestamps: str = "rfc3339"
    archive: bool = False
    late_output: OutputTemplate | None = None
    origin: str = "config"


@dataclass(frozen=True)
class ConnectorConfig:
    """A `[connectors.NAME]` table: where rows go, and the kind's own options (see `arros_mqtt/connectors/`)."""

    name: str
    kind: str
    stream: str | None  # rows go into this stream (declared without topic), no broker hop
    output: str | None  # and/or to this MQTT topic as JSON (a connector on a separate gateway)
    qos: int = 1
    interval: float = 1.0
    options: Any = None


@dataclass(frozen=True)
class UplinkConfig:
    """`[uplinks.NAME]`: local topics forwarded to a cloud broker through an on-disk buffer (docs/uplinks.md)."""

    name: str
    broker: BrokerConfig  # the cloud broker: url, client_id, credentials, TLS
    topics: tuple[str, ...]  # local topic filters to forward
    prefix: str = ""  # put in front of each topic upstream ("site-7" -> "site-7/derived/...")
    qos: int = 1  # upstream QoS (0, 1 or 2); local subscriptions are QoS 1
    buffer: int = 2 * 1024**3  # bytes on disk under state_dir/uplinks/NAME
    when_full: str = "drop_oldest"  # or "stop": stop taking local messages until there is room
    max_rate: float = 0.0  # messages/s upstream; 0 = no limit
    batch: str = "none"  # or "json" / "arrow": consecutive messages of one topic go up as one message
    batch_max_messages: int = 100
    batch_max_delay: float = 1.0  # seconds a batch waits to fill


UPLINK_BROKER_KEYS = ("url", "client_id", "protocol", "username", "password", "tls_ca", "tls_cert", "tls_key",
                      "keepalive", "session_expiry")


def _uplink(sec: _Section, name: str, state_dir: str) -> UplinkConfig:
    sec.only(*UPLINK_BROKER_KEYS, "topics", "prefix", "qos", "buffer", "when_full", "max_rate",
             "batch", "batch_max_messages", "batch_max_delay")
    if not name.replace("_", "a").replace("-", "a").isalnum():
        raise ConfigError(sec.source, sec.path, "uplink names are letters, digits, _ and -")
    sec.required_string("url")
    broker = _broker(_Section({k: v for k, v in sec.data.items() if k in UPLINK_BROKER_KEYS}, sec.source, sec.path))
    if "client_id" not in sec.data:
        broker = replace(broker, client_id=f"{default_client_id(state_dir)}-uplink-{name}")
    topics = sec.get("topics", list, None)
    if not topics or not all(isinstance(t, str) and t for t in topics):
        raise sec.error("topics", "expected a non-empty array of topic filters like [\"derived/#\"]")
    for topic in topics:
        levels = topic.split("/")
        if any(level not in ("+", "#") and ("+" in level or "#" in level) for level in levels) or (
                "#" in levels[:-1]):
            raise sec.error("topics", f"invalid topic filter {topic!r}")
    prefix = sec.string("prefix", "")
    if any(c in prefix for c in "+#"):
        raise sec.error("prefix", f"invalid topic prefix {prefix!r}")
    qos = sec.integer("qos", 1)
    if qos not in (0, 1, 2):
        raise sec.error("qos", f"must be 0, 1 or 2, got {qos}")
    buffer = sec.size("buffer", UplinkConfig.buffer)
    if buffer < 64 * 1024:
        raise sec.error("buffer", "must be at least 64KiB")
    when_full = sec.string("when_full", "drop_oldest")
    if when_full not in ("drop_oldest", "stop"):
        raise sec.error("when_full", f"expected \"drop_oldest\" or \"stop\", got {when_full!r}")
    max_rate = float(sec.get("max_rate", (int, float), 0))
    if max_rate < 0:
        raise sec.error("max_rate", f"must be at least 0, got {max_rate}")
    batch = sec.string("batch", "none")
    if batch not in ("none", "json", "arrow"):
        raise sec.error("batch", f"expected \"none\", \"json\" or \"arrow\", got {batch!r}")
    batch_max_messages = sec.integer("batch_max_messages", UplinkConfig.batch_max_messages)
    if not 1 <= batch_max_messages <= 10000:
        raise sec.error("batch_max_messages", f"must be 1 to 10000, got {batch_max_messages}")
    batch_max_delay = sec.duration("batch_max_delay", UplinkConfig.batch_max_delay)
    if not 0 <= batch_max_delay <= 3600:
        raise sec.error("batch_max_delay", f"must be 0 to 1h, got {batch_max_delay}")
    return UplinkConfig(name=name, broker=broker, topics=tuple(topics), prefix=prefix, qos=qos, buffer=buffer,
                        when_full=when_full, max_rate=max_rate, batch=batch, batch_max_messages=batch_max_messages,
                        batch_max_delay=batch_max_delay)


@dataclass(frozen=True)
class Config:
    source: str = "<defaults>"
    broker: BrokerConfig | None = None
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    flight: FlightConfig = field(default_factory=FlightConfig)
    durability: DurabilityConfig = field(default_factory=DurabilityConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    streams: dict[str, StreamConfig] = field(default_factory=dict)
    tables: dict[str, TableConfig] = field(default_factory=dict)
    subscriptions: dict[str, SubscriptionConfig] = field(default_factory=dict)
    connectors: dict[str, ConnectorConfig] = field(default_factory=dict)
    uplinks: dict[str, UplinkConfig] = field(default_factory=dict)

    def with_broker_url(self, url: str) -> Config:
        """The same config attached to `url` (the `--broker` option), keeping other [broker] settings."""
        base = self.broker or BrokerConfig(client_id=default_client_id(self.engine.state_dir))
        try:
            broker = _parse_broker_url(url, base)
        except ValueError as exc:
            raise ConfigError("--broker", "", str(exc)) from None
        return replace(self, broker=broker)


def default_client_id(state_dir: str) -> str:
    """`arros-{host}-{8 hex digits of the state_dir's absolute path}`: stable across restarts of one
    instance (its persistent session), different for two instances on one host (two state_dirs)."""
    digest = hashlib.sha1(os.path.realpath(state_dir).encode()).hexdigest()[:8]
    return f"arros-{socket.gethostname()}-{digest}"


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; every problem is a ConfigError naming file and key."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None
    return parse_config(data, source)


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    root = _Section(data, source, "")
    root.only(
        "broker", "embedded", "engine", "archive", "control", "streams", "tables", "subscriptions",
        "connectors", "metrics", "durability", "live", "flight", "web", "cluster", "uplinks",
    )
    _check_name_rule(root)
    streams = {name: _stream(sec, name) for name, sec in root.section("streams").sections()}
    config = Config(
        source=source,
        broker=_broker(root.section("broker")) if "broker" in data else None,
        embedded=_embedded(root.section("embedded")),
        engine=_engine(root.section("engine")),
        archive=_archive(root.section("archive")),
        control=_control(root.section("control")),
        metrics=_metrics(root.section("metrics")),
        web=_web(root.section("web")),
        live=_live(root.section("live")),
        flight=_flight(root.section("flight")),
        durability=_durability(root.section("durability")),
        cluster=_cluster(root.section("cluster")),
        streams=streams,
        tables={name: _table(sec, name) for name, sec in root.section("tables").sections()},
        subscriptions={name: _subscription(sec, name) for name, sec in root.section("subscriptions").sections()},
        connectors={name: _connector(sec, name, streams) for name, sec in root.section("connectors").sections()},
    )
    config = replace(config, uplinks={name: _uplink(sec, name, config.engine.state_dir)
                                      for name, sec in root.section("uplinks").sections()})
    _check_names(config)
    _check_outputs(config)
    if config.broker is not None and "client_id" not in data.get("broker", {}):
        config = replace(config, broker=replace(config.broker, client_id=default_client_id(config.engine.state_dir)))
    return config


class _Section:
    """A TOML table with its dotted key path, for error messages that name the key."""

    def __init__(self, data: Any, source: str, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(source, path, f"expected a table, got {_kind(data)}")
        self.data, self.source, self.path = data, source, path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), message)

    def only(self, *allowed: str) -> None:
        for name in self.data:
            if name not in allowed:
                raise self.error(name, f"unknown key (known keys: {', '.join(allowed)})")

    def section(self, name: str) -> _Section:
        return _Section(self.data.get(name, {}), self.source, self.key(name))

    def sections(self) -> list[tuple[str, _Section]]:
        return [(name, self.section(name)) for name in self.data]

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self.data.get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        if not isinstance(value, kind):
            raise self.error(name, f"expected {_expected(kind)}, got {_kind(value)}")
        return value

    def string(self, name: str, default: Any = None) -> Any:
        return self.get(name, str, default)

    def listen(self, name: str, default: str | None = None) -> str | None:
        """A `"host:port"` (None when absent without a default), checked by `parse_listen`."""
        listen = self.string(name, default)
        if listen is not None:
            try:
                parse_listen(listen)
            except ValueError as exc:
                raise self.error(name, str(exc)) from None
        return listen

    def required_string(self, name: str) -> str:
        if name not in self.data:
            raise self.error(name, "is required")
        return self.string(name)

    def boolean(self, name: str, default: bool) -> bool:
        return self.get(name, bool, default)

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.get(name, int, default)
        if value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        return value

    def duration(self, name: str, default: float) -> float:
        if name not in self.data:
            return default
        try:
            return parse_duration(self.data[name])
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def size(self, name: str, default: int) -> int:
        """Bytes as an integer or a string like "512KB", "64MB", "1GiB" (KB = 1000, KiB = 1024)."""
        value = self.get(name, (int, str), default)
        if isinstance(value, int):
            if value < 0:
                raise self.error(name, f"must be at least 0, got {value}")
            return value
        match = _SIZE.match(value.strip())
        if match is None:
            raise self.error(name, f"invalid size {value!r} (use bytes or e.g. \"64MB\", \"512KiB\")")
        return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])

    def choice(self, name: str, choices: tuple[str, ...], default: str, implemented: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise self.error(name, f"unknown value {value!r} (choose one of: {', '.join(choices)})")
        if value not in implemented:
            raise self.error(name, f"{value!r} is not implemented yet (implemented: {', '.join(implemented)})")
        return value

    def qos(self, name: str = "qos") -> int:
        value = self.integer(name, 1)
        if value not in (0, 1):
            raise self.error(name, f"must be 0 or 1, got {value} (QoS 2 is for subscriptions only)")
        return value

    def output_qos(self, name: str = "qos") -> int | None:
        """A subscription's QoS: 0, 1 or 2 (exactly once), None when not given."""
        if name not in self.data:
            return None
        value = self.integer(name, 1)
        if value not in (0, 1, 2):
            raise self.error(name, f"must be 0, 1 or 2, got {value}")
        return value

    def topic(self, name: str) -> TopicPattern:
        try:
            return TopicPattern.parse(self.required_string(name))
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def template(self, name: str) -> OutputTemplate | None:
        if name not in self.data:
            return None
        try:
            return OutputTemplate.parse(self.string(name))
        except ValueError as exc:
            raise self.error(name, str(exc)) from None


def _broker(sec: _Section) -> BrokerConfig:
    sec.only(
        "url", "client_id", "protocol", "username", "password", "tls_ca", "tls_cert", "tls_key",
        "keepalive", "session_expiry", "clean_start", "max_packet_size",
    )
    defaults = BrokerConfig()
    protocol = str(sec.get("protocol", (str, int, float), "5"))
    if protocol not in ("5", "3.1.1"):
        raise sec.error("protocol", f"must be \"5\" or \"3.1.1\", got {protocol!r}")
    broker = BrokerConfig(
        client_id=sec.string("client_id", defaults.client_id),
        protocol=protocol,
        username=sec.string("username"),
        password=sec.string("password"),
        tls_ca=sec.string("tls_ca"),
        tls_cert=sec.string("tls_cert"),
        tls_key=sec.string("tls_key"),
        keepalive=sec.integer("keepalive", 30, minimum=1),
        session_expiry=sec.duration("session_expiry", 3600.0),
        clean_start=sec.boolean("clean_start", False),
        max_packet_size=sec.size("max_packet_size", 0),
    )
    for key in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(broker, key)
        if value is not None and not Path(value).is_file():
            raise sec.error(key, f"file {value!r} not found")
    if (broker.tls_cert is None) != (broker.tls_key is None):
        raise sec.error("tls_cert", "tls_cert and tls_key must be given together")
    try:
        return _parse_broker_url(sec.string("url", defaults.url), broker)
    except ValueError as exc:
        raise sec.error("url", str(exc)) from None


def _parse_broker_url(url: str, base: BrokerConfig) -> BrokerConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"unsupported broker URL {url!r} (use mqtt://host:1883 or mqtts://host:8883)")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"broker URL {url!r} has an invalid port") from None
    scheme = {"tcp": "mqtt", "ssl": "mqtts"}.get(parts.scheme, parts.scheme)
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return replace(
        base,
        url=f"{scheme}://{netloc}",
        username=unquote(parts.username) if parts.username else base.username,
        password=unquote(parts.password) if parts.password else base.password,
    )


def _embedded(sec: _Section) -> EmbeddedConfig:
    sec.only("listen", "broker_config")
    listen = sec.string("listen", "127.0.0.1:1883")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise sec.error("listen", f"expected host:port like \"127.0.0.1:1883\", got {listen!r}")
    broker_config = sec.string("broker_config")
    if broker_config is not None and not Path(broker_config).is_file():
        raise sec.error("broker_config", f"file {broker_config!r} not found")
    return EmbeddedConfig(listen=listen, broker_config=broker_config)


def _engine(sec: _Section) -> EngineConfig:
    sec.only("batch_max_rows", "batch_max_delay", "batch_max_bytes", "batching", "batch_linger", "state_dir",
             "max_result_rows", "max_result_bytes", "max_batch_seconds", "sql_memory", "workers")
    defaults = EngineConfig()
    batching = sec.string("batching", defaults.batching)
    if batching not in ("adaptive", "delay"):
        raise sec.error("batching", f"expected \"adaptive\" or \"delay\", got {batching!r}")
    max_bytes = sec.size("batch_max_bytes", defaults.batch_max_bytes)
    if max_bytes < 1:
        raise sec.error("batch_max_bytes", "must be at least 1 byte")
    return EngineConfig(
        batch_max_rows=sec.integer("batch_max_rows", 10000, minimum=1),
        batch_max_delay=sec.duration("batch_max_delay", 0.02),
        state_dir=sec.string("state_dir", "./arros-state"),
        batch_max_bytes=max_bytes,
        batching=batching,
        batch_linger=sec.duration("batch_linger", defaults.batch_linger),
        max_result_rows=sec.integer("max_result_rows", defaults.max_result_rows, minimum=0),
        max_result_bytes=sec.size("max_result_bytes", defaults.max_result_bytes),
        max_batch_seconds=sec.duration("max_batch_seconds", defaults.max_batch_seconds),
        sql_memory=sec.size("sql_memory", defaults.sql_memory),
        workers=sec.integer("workers", defaults.workers, minimum=1),
    )


def _cluster(sec: _Section) -> ClusterConfig:
    sec.only("group", "member")
    values = {key: sec.string(key) for key in ("group", "member")}
    for key, value in values.items():
        if value is not None and not _GROUP_NAME.match(value):
            raise sec.error(key, f"invalid {key} name {value!r} (1-64 letters, digits, '-', '_' or '.': it is a "
                            "topic level)")
    if values["member"] is not None and values["group"] is None:
        raise sec.error("member", "needs group")
    return ClusterConfig(**values)


def _archive(sec: _Section) -> ArchiveConfig:
    sec.only("dir", "roll_rows", "roll_interval", "compression", "retention", "upload", *_UPLOAD_KEYS)
    compression = sec.string("compression", "zstd")
    if compression not in ("zstd", "snappy", "gzip", "lz4", "brotli", "none"):
        raise sec.error("compression", f"unknown codec {compression!r} (zstd, snappy, gzip, lz4, brotli, none)")
    for key in ("roll_interval", "retention"):
        if key in sec.data and sec.duration(key, 0.0) == 0:
            raise sec.error(key, "must be longer than 0s")
    return ArchiveConfig(
        dir=sec.string("dir", "./archive"),
        roll_rows=sec.integer("roll_rows", 1_000_000, minimum=1),
        roll_interval=sec.duration("roll_interval", 300.0),
        compression=compression,
        retention=sec.duration("retention", 0.0) or None,
        **_archive_upload(sec),
    )


# The [archive] keys that go with `upload`, and the kinds of store each applies to (docs/config.md)
_UPLOAD_KEYS = {"endpoint_override": ("s3", "gs", "az"), "keep_local": ("s3", "gs", "az"),
                "region": ("s3",), "access_key": ("s3",), "secret_key": ("s3",), "anonymous": ("s3", "gs"),
                "account_name": ("az",), "account_key": ("az",), "sas_token": ("az",)}


def _archive_upload(sec: _Section) -> dict[str, Any]:
    """The `upload` keys of [archive]: where rolled files go (docs/uplinks.md)."""
    upload = sec.string("upload")
    used = [key for key in _UPLOAD_KEYS if key in sec.data]
    if upload is None:
        if used:
            raise sec.error(used[0], f"applies only with upload = {FORMS}")
    else:
        try:
            kind = parse_object_url(upload).kind
        except ValueError as exc:
            raise sec.error("upload", str(exc)) from None
        for key in used:
            if kind not in _UPLOAD_KEYS[key]:
                kinds = " and ".join(f"{k}://" for k in _UPLOAD_KEYS[key])
                raise sec.error(key, f"applies only to {kinds} uploads, not {upload!r}")
    if (sec.string("access_key") is None) != (sec.string("secret_key") is None):
        raise sec.error("access_key", "access_key and secret_key must be given together")
    if sec.string("account_key") is not None and sec.string("sas_token") is not None:
        raise sec.error("sas_token", "give account_key or sas_token, not both")
    if sec.boolean("anonymous", False) and sec.string("access_key") is not None:
        raise sec.error("anonymous", "anonymous = true takes no access_key")
    if (endpoint := sec.string("endpoint_override")) is not None:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
            raise sec.error("endpoint_override", f"expected [http:// or https://]host[:port], got {endpoint!r}")
    return {"upload": upload, "endpoint_override": sec.string("endpoint_override"), "region": sec.string("region"),
            "access_key": sec.string("access_key"), "secret_key": sec.string("secret_key"),
            "anonymous": sec.boolean("anonymous", False), "account_name": sec.string("account_name"),
            "account_key": sec.string("account_key"), "sas_token": sec.string("sas_token"),
            "keep_local": sec.boolean("keep_local", True)}


def _control(sec: _Section) -> ControlConfig:
    sec.only("prefix", "max_subscriptions", "max_state_bytes", "max_output_rate", "status_interval", "lagging_after")
    prefix = sec.string("prefix", "arros")
    if not prefix or any(c in prefix for c in "+#") or prefix.startswith("/") or prefix.endswith("/"):
        raise sec.error("prefix", f"invalid topic prefix {prefix!r}")
    defaults = ControlConfig()
    status_interval = sec.duration("status_interval", defaults.status_interval)
    if status_interval <= 0:
        raise sec.error("status_interval", "must be more than 0s")
    return ControlConfig(
        prefix=prefix,
        max_subscriptions=sec.integer("max_subscriptions", defaults.max_subscriptions),
        max_state_bytes=sec.size("max_state_bytes", defaults.max_state_bytes),
        max_output_rate=sec.integer("max_output_rate", defaults.max_output_rate),
        status_interval=status_interval,
        lagging_after=sec.duration("lagging_after", defaults.lagging_after),
    )


def _durability(sec: _Section) -> DurabilityConfig:
    sec.only("wal", "sync", "checkpoint_interval", "output_memory", "output_spill", "shutdown_timeout")
    defaults = DurabilityConfig()
    sync: float | None = defaults.sync
    text = sec.string("sync")
    if text == "none":
        sync = None
    elif text is not None and text != "batch":
        sync = sec.duration("sync", 0.0)
        if sync <= 0:
            raise sec.error("sync", "must be \"batch\", \"none\" or a duration longer than 0s like \"100ms\"")
    for key in ("checkpoint_interval", "shutdown_timeout"):
        if key in sec.data and sec.duration(key, 0.0) <= 0:
            raise sec.error(key, "must be longer than 0s")
    return DurabilityConfig(
        wal=sec.boolean("wal", defaults.wal),
        sync=sync,
        checkpoint_interval=sec.duration("checkpoint_interval", defaults.checkpoint_interval),
        output_memory=sec.size("output_memory", defaults.output_memory),
        output_spill=sec.size("output_spill", defaults.output_spill),
        shutdown_timeout=sec.duration("shutdown_timeout", defaults.shutdown_timeout),
    )


def _metrics(sec: _Section) -> MetricsConfig:
    sec.only("listen")
    return MetricsConfig(listen=sec.listen("listen"))


def _web(sec: _Section) -> WebConfig:
    sec.only("enabled", "listen", "password")
    listen = sec.listen("listen")
    password = sec.string("password")
    if password == "":
        raise sec.error("password", "must not be empty (leave it out to get a token printed at start)")
    return WebConfig(enabled=sec.boolean("enabled", True), listen=listen, password=password)


def _live(sec: _Section) -> LiveConfig:
    sec.only("enabled", "max_rows", "max_bytes", "result_rows", "dead_letters")
    defaults = LiveConfig()
    return LiveConfig(
        enabled=sec.boolean("enabled", defaults.enabled),
        max_rows=sec.integer("max_rows", defaults.max_rows, minimum=0),
        max_bytes=sec.size("max_bytes", defaults.max_bytes),
        result_rows=sec.integer("result_rows", defaults.result_rows, minimum=0),
        dead_letters=sec.integer("dead_letters", defaults.dead_letters, minimum=0),
    )


def _flight(sec: _Section) -> FlightConfig:
    sec.only("enabled", "listen", "username", "password", "tls_cert", "tls_key")
    defaults = FlightConfig()
    listen = sec.listen("listen", defaults.listen)
    host, _port = parse_listen(listen)
    values = {key: sec.string(key) for key in ("username", "password", "tls_cert", "tls_key")}
    for first, second in (("username", "password"), ("tls_cert", "tls_key")):
        if (values[first] is None) != (values[second] is None):
            missing = second if values[second] is None else first
            raise sec.error(missing, f"is required with {second if missing == first else first}")
    enabled = sec.boolean("enabled", defaults.enabled)
    if enabled and values["password"] is None and not _is_loopback(host):
        raise sec.error("listen", f"{listen} is reachable beyond this machine: set username and password "
                        "(and tls_cert/tls_key), or listen on 127.0.0.1")
    return FlightConfig(enabled=enabled, listen=listen, listen_set="listen" in sec.data, **values)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """`"host:port"` -> (host, port); ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected \"host:port\" like \"127.0.0.1:9108\", got {text!r}")
    return host.strip("[]"), int(port)


def parse_subscription(data: dict[str, Any], name: str, source: str) -> SubscriptionConfig:
    """One subscription from a mapping shaped like a `[subscriptions.NAME]` table (control requests)."""
    subscription = _subscription(_Section(data, source, ""), name)
    return replace(subscription, origin="control")


def _schema(sec: _Section) -> pa.Schema | None:
    if "schema" not in sec.data:
        return None
    schema_sec = sec.section("schema")
    fields = []
    for name, type_name in schema_sec.data.items():
        try:
            fields.append(pa.field(name, parse_arrow_type(type_name)))
        except ValueError as exc:
            raise schema_sec.error(name, str(exc)) from None
        if name in METADATA_COLUMNS:
            raise schema_sec.error(name, f"{name} is a column Arros adds itself; rename the field")
    if not fields:
        raise sec.error("schema", "declares no columns")
    return pa.schema(fields)


def _stream(sec: _Section, name: str) -> StreamConfig:
    sec.only("topic", "format", "schema", "event_time", "watermark", "idle_timeout", "qos", "archive", "host_id",
             "header", "reorder_timeout", "measurement", "precision", "max_future", "max_past")
    topic = sec.topic("topic") if "topic" in sec.data else None
    fmt = sec.choice("format", FORMATS_IN, "json", FORMATS_IMPLEMENTED_IN)
    _check_format_options(sec, fmt)
    schema = _sparkplug(sec, topic) if fmt == "sparkplug" else _schema(sec)
    precision = sec.string("precision", "ns")
    if precision not in INFLUX_PRECISIONS:
        raise sec.error("precision", f"must be one of {', '.join(INFLUX_PRECISIONS)}, got {precision!r}")
    if schema is not None and fmt in ("csv", "influx"):
        _check_flat_schema(sec, schema, fmt)
    if schema is not None and fmt == "influx":
        schema = pa.schema([pa.field("_measurement", pa.string()),
                            pa.field("_time", pa.timestamp(precision, tz="UTC")), *schema])
    stream = StreamConfig(
        name=name,
        topic=topic,
        format=fmt,
        schema=schema,
        event_time=sec.string("event_time"),
        watermark=sec.duration("watermark", 0.0),
        idle_timeout=sec.duration("idle_timeout", 30.0),
        max_future=sec.duration("max_future", 60.0),
        max_past=sec.duration("max_past", 0.0),
        qos=sec.qos(),
        archive=sec.boolean("archive", False),
        host_id=sec.string("host_id"),
        reorder_timeout=sec.duration("reorder_timeout", 2.0),
        header=sec.boolean("header", False),
        measurement=_measurement(sec),
        precision=precision,
    )
    if topic is None and schema is None:
        raise sec.error("topic", "is required (a stream without a topic is fed by a connector and needs a schema)")
    if schema is None and fmt == "csv" and not stream.header:
        raise sec.error("schema", "is required for csv without header = true (columns come in schema order)")
    captured = [c for c, _ in topic.captures] if topic else []
    for capture in captured:
        if schema is not None and capture in schema.names:
            raise sec.error("topic", f"capture {{{capture}}} has the same name as a schema column")
    if stream.event_time is not None:
        if schema is None:
            raise sec.error("event_time", "needs a declared schema (this stream's schema is inferred at run time)")
        full = stream.full_schema()
        if stream.event_time not in full.names:
            columns = ", ".join(full.names)
            raise sec.error("event_time", f"{stream.event_time!r} is not a column of the stream ({columns})")
        if not pa.types.is_timestamp(full.field(stream.event_time).type):
            raise sec.error("event_time", f"column {stream.event_time!r} must be a timestamp type")
    return stream


def _check_format_options(sec: _Section, fmt: str) -> None:
    for option, formats in FORMAT_OPTIONS.items():
        if option in sec.data and fmt not in formats:
            allowed = " or ".join(f'format = "{f}"' for f in formats)
            raise sec.error(option, f'applies to {allowed} streams only (this one is format = "{fmt}")')


def _check_flat_schema(sec: _Section, schema: pa.Schema, fmt: str) -> None:
    """csv and influx carry scalar values only; influx adds `_measurement` and `_time` itself."""
    schema_sec = sec.section("schema")
    for column in schema:
        if pa.types.is_nested(column.type):
            raise schema_sec.error(column.name, f"{fmt} values are scalars; {column.type} cannot be read from {fmt}")
        if fmt == "influx" and column.name in INFLUX_COLUMNS:
            raise schema_sec.error(column.name, f"{column.name} is a column the influx format adds itself")


def _measurement(sec: _Section) -> str | None:
    measurement = sec.string("measurement")
    if measurement is not None and not measurement:
        raise sec.error("measurement", "is empty")
    return measurement


def _sparkplug(sec: _Section, topic: TopicPattern | None) -> pa.Schema:
    """A sparkplug stream's columns are fixed (docs/payloads.md); it reads Sparkplug B topics only."""
    if "schema" in sec.data:
        raise sec.error("schema", "a sparkplug stream has fixed columns (group_id, edge_node_id, ..., value_string): "
                        "remove schema")
    if topic is None:
        raise sec.error("topic", "is required (e.g. \"spBv1.0/#\" or \"spBv1.0/my_group/#\")")
    if not topic.filter.startswith(("spBv1.0/", "#", "+/")):
        raise sec.error("topic", f"{topic.text!r} is not a Sparkplug B topic filter (spBv1.0/...)")
    for capture, _ in topic.captures:
        if capture in SPARKPLUG_SCHEMA.names:
            raise sec.error("topic", f"capture {{{capture}}} has the same name as a sparkplug column")
    host_id = sec.string("host_id")
    if host_id is not None and (not host_id or any(c in host_id for c in "/+#")):
        raise sec.error("host_id", f"invalid host id {host_id!r} (one topic level, no + or #)")
    return SPARKPLUG_SCHEMA


def _connector(sec: _Section, name: str, streams: dict[str, StreamConfig]) -> ConnectorConfig:
    """Common keys here; the kind parses (strictly) the rest, found by name in the connector registry."""
    from arros_mqtt.core.connector_kinds import OptionError, load_kind

    kind = sec.required_string("kind")
    try:
        connector_class = load_kind(kind)
    except LookupError as exc:
        raise sec.error("kind", str(exc)) from None
    requires = getattr(connector_class, "requires", None)
    if requires and importlib.util.find_spec(requires) is None:
        raise sec.error("kind", f"the {kind} connector needs the {requires} package "
                        f"(pip install 'arros-mqtt[{kind}]')")
    try:
        options = connector_class.parse_options({k: v for k, v in sec.data.items() if k not in CONNECTOR_KEYS})
    except OptionError as exc:
        raise sec.error(exc.key, exc.message) from None
    stream_name = sec.string("stream")
    output = sec.string("output")
    if stream_name is None and output is None:
        raise sec.error("stream", "is required (or output = \"some/topic\"): where should the readings go?")
    if output is not None and (not output or any(c in output for c in "+#")):
        raise sec.error("output", f"invalid topic {output!r} (no + or #)")
    if stream_name is not None:
        stream = streams.get(stream_name)
        if stream is None:
            raise sec.error("stream", f"unknown stream {stream_name!r} (declare [streams.{stream_name}] with a schema "
                            "and no topic)")
        if stream.topic is not None:
            raise sec.error("stream", f"stream {stream_name!r} has a topic; a connector feeds a stream without topic")
        missing = [c for c in connector_class.columns(options) if c not in stream.schema.names]
        if missing:
            raise sec.error("stream", f"stream {stream_name!r} has no column {missing[0]!r} "
                            f"(it has: {', '.join(stream.schema.names)})")
    interval = sec.duration("interval", 1.0)
    if interval <= 0:
        raise sec.error("interval", "must be more than 0")
    return ConnectorConfig(name=name, kind=kind, stream=stream_name, output=output, qos=sec.qos(), interval=interval,
                           options=options)


def _table(sec: _Section, name: str) -> TableConfig:
    sec.only("path")
    path = sec.required_string("path")
    if not path.endswith((".csv", ".parquet")):
        raise sec.error("path", f"{path!r}: lookup tables are .csv or .parquet files")
    return TableConfig(name=name, path=path)


def _subscription(sec: _Section, name: str) -> SubscriptionConfig:
    sec.only("sql", "output", "format", "qos", "retain", "batch", "timestamps", "archive", "late_output")
    timestamps = sec.string("timestamps", "rfc3339")
    if timestamps not in ("rfc3339", "epoch_ms"):
        raise sec.error("timestamps", f"must be \"rfc3339\" or \"epoch_ms\", got {timestamps!r}")
    sql = sec.required_string("sql")
    if not sql.strip():
        raise sec.error("sql", "is empty")
    subscription = SubscriptionConfig(
        name=name,
        sql=sql,
        output=sec.template("output"),
        format=sec.choice("format", FORMATS_OUT, "json", FORMATS_IMPLEMENTED_OUT),
        qos=sec.output_qos(),
        retain=sec.boolean("retain", False),
        batch=sec.boolean("batch", False),
        timestamps=timestamps,
        archive=sec.boolean("archive", False),
        late_output=sec.template("late_output"),
    )
    if subscription.output is None and not subscription.archive:
        raise sec.error("output", "is required (or set archive = true): where should results go?")
    if subscription.format == "arrow":
        if not subscription.batch:
            raise sec.error("format", 'format = "arrow" needs batch = true (one Arrow IPC stream per micro-batch '
                            "and output topic; a stream per row would be mostly schema)")
        if "timestamps" in sec.data:
            raise sec.error("timestamps", 'does not apply to format = "arrow" (Arrow keeps timestamps typed)')
    return subscription


def _check_name_rule(root: _Section) -> None:
    """Names follow the control protocol's rule (core/names.py), checked before anything else of their table."""
    for kind in ("streams", "tables", "subscriptions", "connectors"):
        for name in root.section(kind).data:
            if not valid_name(name):
                raise root.section(kind).error(name, f"a name must be {NAME_RULE}")


def _check_outputs(config: Config) -> None:
    """No subscription may publish under the control prefix or to a `$` topic (core/topics.py)."""
    for name, subscription in config.subscriptions.items():
        for key in ("output", "late_output"):
            template = getattr(subscription, key)
            reason = reserved_output(template, config.control.prefix) if template is not None else None
            if reason is not None:
                raise ConfigError(config.source, f"subscriptions.{name}.{key}", reason)


def _check_names(config: Config) -> None:
    for name in config.tables:
        if name in config.streams:
            raise ConfigError(config.source, f"tables.{name}", "a stream has the same name; names must be unique")
    host_ids = {s.host_id or "arros" for s in config.streams.values() if s.format == "sparkplug"}
    if len(host_ids) > 1:
        name = next(s.name for s in config.streams.values() if s.format == "sparkplug" and s.host_id)
        raise ConfigError(config.source, f"streams.{name}.host_id", "all sparkplug streams must use the same host_id "
                          f"(one STATE message per service), got {', '.join(sorted(host_ids))}")


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _expected(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_kind(k()) for k in kinds)
