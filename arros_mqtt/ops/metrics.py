"""Prometheus metrics on `[metrics] listen = "host:port"` (path `/metrics`).

Counters are not incremented on the hot path: they are read at scrape time from the counters the
pipeline, the engine and the control plane keep anyway. Only the batch latency histogram is
observed per micro-batch (once per batch, not per message). Each service has a registry of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from arros_mqtt.config import parse_listen
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.engine import Engine
from arros_mqtt.ops.health import HealthSources, health

BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class MetricsSources:
    """What the metrics read at scrape time (wired by `Service`): per-stream counters (`messages`, `rows`,
    `deadletters`), the engine's subscriptions, the health report's parts, the control plane's request
    counts (None without a control plane), and where to observe each micro-batch's duration."""

    listen: str
    source: str  # the config file, for error messages
    streams: Callable[[], Mapping[str, Any]]
    engine: Engine
    health: HealthSources
    control_requests: Callable[[], Mapping[tuple[str, str], int]] | None
    add_batch_observer: Callable[[Callable[[str, int, float], None]], None]


class MetricsServer:
    def __init__(self, sources: MetricsSources) -> None:
        self.listen = sources.listen
        self.source = sources.source
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ServiceCollector(sources))
        self.batch_seconds = Histogram(
            "arros_batch_seconds", "Time to decode, query and publish one micro-batch", ["stream"],
            buckets=BATCH_SECONDS_BUCKETS, registry=self.registry,
        )
        sources.add_batch_observer(lambda stream, _n, seconds: self.batch_seconds.labels(stream).observe(seconds))
        self._server = None

    def start(self) -> None:
        host, port = parse_listen(self.listen)
        try:
            self._server, _thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(self.source, "metrics.listen", f"cannot listen on {self.listen}: {exc.strerror}") \
                from None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.server_port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class ServiceCollector(Collector):
    """Reads the service's counters when Prometheus scrapes."""

    def __init__(self, sources: MetricsSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        streams = list(self.sources.streams().items())
        for metric, help_text, value in (
            ("arros_stream_messages", "MQTT messages received per stream", lambda s: s.messages),
            ("arros_stream_rows", "Rows decoded per stream", lambda s: s.rows),
            ("arros_deadletters", "Payloads that could not be decoded, per stream", lambda s: s.deadletters),
        ):
            family = CounterMetricFamily(metric, help_text, labels=["stream"])
            for name, stats in streams:
                family.add_metric([name], value(stats))
            yield family

        engine = self.sources.engine
        subscriptions = list(engine.subscriptions.values())
        paused = dict(engine.paused)
        for metric, help_text, value in (
            ("arros_subscription_rows_in", "Rows a subscription read", lambda s: s.rows_in),
            ("arros_subscription_rows_out", "Result rows a subscription produced", lambda s: s.rows_out),
            ("arros_subscription_messages_out", "MQTT messages a subscription published", lambda s: s.messages_out),
            ("arros_subscription_late_rows", "Rows behind the watermark", lambda s: s.late_rows),
            ("arros_subscription_errors", "Micro-batches a subscription failed on", lambda s: s.errors),
        ):
            family = CounterMetricFamily(metric, help_text, labels=["subscription"])
            for subscription in subscriptions:
                family.add_metric([subscription.name], value(subscription.stats))
            yield family
        for metric, help_text, value in (
            ("arros_subscription_state_bytes", "Bytes of state a subscription holds", lambda s: s.stats.state_bytes),
            ("arros_subscription_state_rows", "Rows/groups of state held", lambda s: s.stats.state_rows),
            ("arros_subscription_paused", "1 while a subscription is paused", lambda s: int(s.name in paused)),
        ):
            family = GaugeMetricFamily(metric, help_text, labels=["subscription"])
            for subscription in subscriptions:
                family.add_metric([subscription.name], value(subscription))
            yield family
        yield GaugeMetricFamily("arros_subscriptions", "Live subscriptions", value=len(subscriptions))
        yield from durability_metrics(self.sources.health)
        yield from uplink_metrics(self.sources.health)
        yield from sparkplug_metrics(self.sources.health)

        if self.sources.control_requests is not None:
            family = CounterMetricFamily("arros_control_requests", "Control requests by op and outcome",
                                         labels=["op", "outcome"])
            for (op, outcome), count in list(self.sources.control_requests().items()):
                family.add_metric([op, outcome], count)
            yield family


UPLINK_GAUGES = (
    ("arros_uplink_connected", "1 while the uplink is connected to its cloud broker", "connected"),
    ("arros_uplink_buffered_messages", "Messages in the uplink's buffer the cloud broker has not confirmed",
     "buffered_messages"),
    ("arros_uplink_buffered_bytes", "Bytes of the uplink's buffer on disk", "buffered_bytes"),
    ("arros_uplink_oldest_seconds", "Age of the oldest message the cloud broker has not confirmed", "oldest_seconds"),
)
UPLINK_COUNTERS = (
    ("arros_uplink_dropped", "Messages dropped unsent because the buffer was full (drop_oldest)", "dropped"),
    ("arros_uplink_sent", "Messages the cloud broker confirmed", "sent"),
)


SPARKPLUG_GAUGES = ("nodes", "state_bytes", "rebirths_waiting")  # the other SparkplugStats fields count up
SPARKPLUG_HELP = {
    "ignored": "NCMD, DCMD and STATE messages seen on the stream's topics", "rebirth_requests": "Rebirth NCMDs sent",
    "seq_gaps": "Sequence-number gaps", "unknown_aliases": "Metrics whose alias no birth defined",
    "stale_deaths": "NDEATHs whose bdSeq does not match the NBIRTH", "refused_births": "Births giving one alias "
    "to two metrics (dead letters)", "evicted_nodes": "Edge nodes forgotten past max_state_bytes",
    "nodes": "Edge nodes the host keeps state for", "state_bytes": "Estimated bytes of that state",
    "rebirths_waiting": "Rebirth requests queued behind the rate limit",
}


def sparkplug_metrics(sources: HealthSources) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Each Sparkplug stream's decoder counters, labelled `stream`: `arros_sparkplug_{field}` (docs/operations.md)."""
    if sources.sparkplug is None:
        return
    counters = sources.sparkplug()
    for field, help_text in SPARKPLUG_HELP.items():
        kind = GaugeMetricFamily if field in SPARKPLUG_GAUGES else CounterMetricFamily
        family = kind(f"arros_sparkplug_{field}", help_text, labels=["stream"])
        for stream, values in counters.items():
            family.add_metric([stream], float(values.get(field, 0)))
        yield family


def uplink_metrics(sources: HealthSources) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Per-uplink gauges and counters, labelled `uplink` (docs/uplinks.md)."""
    if sources.uplinks is None:
        return
    states = sources.uplinks()
    for kind, table in ((GaugeMetricFamily, UPLINK_GAUGES), (CounterMetricFamily, UPLINK_COUNTERS)):
        for metric, help_text, key in table:
            family = kind(metric, help_text, labels=["uplink"])
            for name, state in states.items():
                family.add_metric([name], float(state[key]))
            yield family


def durability_metrics(sources: HealthSources) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Prometheus families read at scrape time (nothing is counted on the hot path)."""
    state = health(sources)
    ingest = state["ingest"]
    yield GaugeMetricFamily("arros_backpressure", "1 while ingestion is slowed down on purpose (see /health)",
                            value=int(state["backpressure"]))
    yield CounterMetricFamily("arros_ingest_blocked_seconds", "Time the MQTT client waited for room in the "
                              "micro-batch buffer", value=ingest["blocked_seconds"])
    yield GaugeMetricFamily("arros_lag_seconds", "How long the oldest input waiting for the engine, or the oldest "
                            "result waiting for the broker, has waited", value=state["lag"]["seconds"])
    yield GaugeMetricFamily("arros_lagging", "1 while the lag is past [control] lagging_after",
                            value=int(state["status"] == "lagging"))
    yield GaugeMetricFamily("arros_ingest_pending_messages", "Messages received, not yet in a micro-batch",
                            value=ingest["pending_messages"])
    yield GaugeMetricFamily("arros_ingest_unacknowledged", "QoS 1 messages received whose PUBACK waits for the log",
                            value=ingest["unacknowledged"] or 0)
    yield CounterMetricFamily("arros_ingest_duplicates_dropped", "Redelivered copies of messages already logged",
                              value=ingest["duplicates_dropped"])
    journal = sources.log
    if state["wal"] is not None:
        yield GaugeMetricFamily("arros_wal_bytes", "Size of the write-ahead log", value=state["wal"]["bytes"])
        yield GaugeMetricFamily("arros_wal_last_record", "Seq of the last record appended",
                                value=state["wal"]["last_record"])
        yield CounterMetricFamily("arros_durability_errors", "Log, checkpoint and archive write failures",
                                  value=journal.errors)
        yield CounterMetricFamily("arros_wal_damaged_records", "Acknowledged log records found corrupt at start "
                                  "(skipped, the rest replayed)", value=state["wal"]["damaged_records"])
    if state["checkpoint"] is not None:
        yield GaugeMetricFamily("arros_checkpoint_age_seconds", "Age of the checkpoint a restart would use",
                                value=state["checkpoint"]["age_seconds"])
    if state["outputs"] is not None:
        outputs = state["outputs"]
        yield GaugeMetricFamily("arros_output_queued", "Result messages waiting for the broker",
                                value=outputs["queued"])
        yield GaugeMetricFamily("arros_output_queued_bytes", "Bytes of result messages waiting for the broker",
                                value=outputs["queued_bytes"])
        yield GaugeMetricFamily("arros_output_spilled_bytes", "Of which spilled to disk",
                                value=outputs["spilled_bytes"])
