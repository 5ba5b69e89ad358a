"""The Sparkplug decoder's counters as Prometheus families: counters for what only grows, gauges for the
state held, one sample per Sparkplug stream."""

from __future__ import annotations

from dataclasses import asdict

from arros_mqtt.decode.sparkplug.decoder import SparkplugStats
from arros_mqtt.ops.health import HealthSources
from arros_mqtt.ops.metrics import SPARKPLUG_HELP, sparkplug_metrics


def test_every_sparkplug_counter_is_a_metric_labelled_by_stream():
    stats = SparkplugStats(rebirth_requests=7, refused_births=1, nodes=3, state_bytes=4096, rebirths_waiting=2)
    sources = HealthSources(buffer=None, log=None, ledger=None, archive_failed_seq=lambda: None, receiving=None,
                            sparkplug=lambda: {"plc": asdict(stats)})
    families = {family.name: family for family in sparkplug_metrics(sources)}
    assert set(SPARKPLUG_HELP) == set(asdict(stats))  # no counter left out
    assert families["arros_sparkplug_rebirth_requests"].type == "counter"
    assert families["arros_sparkplug_state_bytes"].type == "gauge"
    samples = {(s.name, s.labels["stream"]): s.value for f in families.values() for s in f.samples}
    assert samples[("arros_sparkplug_rebirth_requests_total", "plc")] == 7
    assert samples[("arros_sparkplug_refused_births_total", "plc")] == 1
    assert samples[("arros_sparkplug_nodes", "plc")] == 3
    assert samples[("arros_sparkplug_rebirths_waiting", "plc")] == 2
