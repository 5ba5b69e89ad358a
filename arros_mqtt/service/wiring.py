"""How the service's parts are built from the config and handed the narrow views they need.

The control plane and the operations side (health, metrics) never see the `Service`: each gets a
frozen record of exactly what it reads or calls, so what they depend on is written down here.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from arros_mqtt.config import BrokerConfig, Config
from arros_mqtt.control.plane import ControlHost, ControlPlane
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.egress.archive import Archive
from arros_mqtt.engine import Engine
from arros_mqtt.ingress.acks import AckLedger
from arros_mqtt.ingress.batcher import MicroBatcher
from arros_mqtt.live import LiveSources, LiveViews
from arros_mqtt.ops.health import HealthSources
from arros_mqtt.service.pipeline import Pipeline
from arros_mqtt.service.round_driver import RoundDriver
from arros_mqtt.transport.interface import Transport
from arros_mqtt.web import WebConsole, WebSources

if TYPE_CHECKING:
    from arros_mqtt.flight import FlightSqlServer
    from arros_mqtt.ops.metrics import MetricsServer


class Parts(Protocol):
    """The parts of a `Service` the views below are made of."""

    config: Config
    engine: Engine
    transport: Transport
    pipeline: Pipeline
    archive: Archive
    batcher: MicroBatcher
    ledger: AckLedger | None
    journal: RoundDriver
    connectors: Any  # ConnectorSet | None
    control: ControlPlane | None
    live: LiveViews | None

    def call_on_engine(self, call: Callable[[], Any]) -> Future: ...


def default_transport(config: Config, position: LogPosition | None = None) -> Transport:
    """Client mode with a [broker] table (or --broker), else the embedded broker on [embedded] listen."""
    from arros_mqtt.transport.presence import host_presence

    streams = list(config.streams.values())
    if config.broker is None:
        from arros_mqtt.transport.embedded_broker import EmbeddedTransport

        return EmbeddedTransport(config.embedded, streams, config.source, host_presence(streams),
                                 config.durability.output_memory)
    from arros_mqtt.service.client_transport import ClientTransport

    return ClientTransport(config.broker, streams, host_presence(streams), config.durability,
                           config.engine.state_dir, position, share_group=config.cluster.group)


def control_plane(service: Parts) -> ControlPlane | None:
    """The control topic on the [broker] one in client mode; in embedded mode, inside the broker."""
    host = ControlHost(
        config=service.config, engine=service.engine, call_on_engine=service.call_on_engine,
        add_result_gate=service.pipeline.add_result_gate,
        extra_fields=lambda stream: service.pipeline.stats[stream].extra_fields,
        connectors=lambda: _connectors(service),
        reset_schema=service.pipeline.reset_schema,
    )
    if service.config.broker is not None:
        return ControlPlane(host, service.config.broker)
    local_client = getattr(service.transport, "local_client", None)
    if local_client is None:  # a transport of a test or a connector-only setup: no broker to listen on
        return None
    return ControlPlane(host, BrokerConfig(protocol="3.1.1"), local_client())


def health_sources(service: Parts) -> HealthSources:
    return HealthSources(buffer=service.batcher, log=service.journal, ledger=service.ledger,
                         archive_failed_seq=service.archive.failed_seq,
                         receiving=getattr(service.transport, "receiving", None),
                         lagging_after=service.config.control.lagging_after,
                         uplinks=lambda: {u.name: u.status() for u in getattr(service, "uplinks", ())},
                         sparkplug=lambda: sparkplug_counters(service.config, service.pipeline))


def sparkplug_counters(config: Config, pipeline: Pipeline) -> dict[str, dict[str, int]]:
    """Each Sparkplug stream's decoder counters (births refused, rebirths asked and waiting, nodes, ...); read
    by format, so the Sparkplug decoder (protobuf) is not imported where no such stream runs."""
    return {stream: asdict(decoder.stats) for stream, decoder in pipeline.decoders.items()
            if config.streams[stream].format == "sparkplug"}


def metrics_server(service: Parts) -> MetricsServer | None:
    listen = service.config.metrics.listen
    if listen is None:
        return None
    from arros_mqtt.ops.metrics import MetricsServer, MetricsSources  # prometheus_client only when served

    control = service.control
    return MetricsServer(MetricsSources(
        listen=listen, source=service.config.source, streams=lambda: service.pipeline.stats,
        engine=service.engine, health=health_sources(service),
        control_requests=(lambda: control.requests) if control is not None else None,
        add_batch_observer=service.pipeline.add_batch_observer,
    ))


def web_console(service: Parts) -> WebConsole | None:
    """The web console on [web] listen (None when `enabled = false`): what it reads and calls, no more."""
    if not service.config.web.enabled:
        return None
    control = service.control
    return WebConsole(WebSources(
        config=service.config, engine=service.engine, streams=lambda: service.pipeline.stats,
        health=health_sources(service), control=control.handle if control is not None else None,
        live=service.live, connectors=lambda: _connectors(service),
        broker=service.transport.description,
    ))


def live_views(service: Parts) -> LiveViews | None:
    """Recent rows, latest results and dead letters in memory for Flight SQL and the web console; fed by
    the pipeline's sinks on the engine thread."""
    if not service.config.live.enabled:
        return None
    engine, pipeline = service.engine, service.pipeline
    views = LiveViews(service.config.live, LiveSources(
        streams=lambda: dict(engine.streams), stream_stats=lambda: dict(pipeline.stats),
        subscriptions=lambda: dict(engine.subscriptions), paused=lambda: dict(engine.paused),
    ))
    pipeline.add_row_sink(views.add_stream_rows)
    pipeline.add_result_sink(views.add_result)
    pipeline.add_deadletter_sink(views.add_dead_letters)
    return views


def uplinks(service: Parts) -> list[Any]:
    """One `Uplink` per [uplinks.NAME]: on the [broker] in client mode, the embedded broker's own client else."""
    if not service.config.uplinks:
        return []
    from arros_mqtt.uplink import Uplink

    local_client = getattr(service.transport, "local_client", None)
    if service.config.broker is None and local_client is None:
        return []  # a transport of a test: no broker to take messages from
    return [Uplink(uplink, service.config.engine.state_dir, service.config.broker,
                   local_client() if service.config.broker is None else None)
            for uplink in service.config.uplinks.values()]


def flight_server(service: Parts) -> FlightSqlServer | None:
    """Arrow Flight SQL over the archives and the live views (`[flight]`, on by default on loopback)."""
    config = service.config
    if not config.flight.enabled:
        return None
    from arros_mqtt.flight import FlightSources, FlightSqlServer  # gRPC loads only when it serves

    return FlightSqlServer(FlightSources(config=config.flight, source=config.source,
                                         archive_dir=Path(config.archive.dir), live=service.live))


def _connectors(service: Parts) -> dict[str, Any]:
    return service.connectors.connectors if service.connectors is not None else {}
