"""Which streams a message topic belongs to: shared by client mode and the embedded broker.

Devices reuse a handful of topics, so the answer is cached per topic: matching every stream's filter
for every message would cost ~2x the rest of the per-message work.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from paho.mqtt.client import topic_matches_sub

from arros_mqtt.config import StreamConfig

Sink = Callable[[str, str, bytes, int], None]  # (stream, topic, payload, received_ms)
ROUTE_CACHE_SIZE = 100_000


class StreamRouter:
    """Maps a message topic to the names of the streams whose topic filters match it."""

    def __init__(self, streams: list[StreamConfig]) -> None:
        self.filters: dict[str, list[str]] = defaultdict(list)  # topic filter -> streams
        self.qos: dict[str, int] = {}  # topic filter -> highest QoS its streams ask for
        for stream in streams:
            if stream.topic is None:
                continue
            topic_filter = stream.topic.filter
            self.filters[topic_filter].append(stream.name)
            self.qos[topic_filter] = max(self.qos.get(topic_filter, 0), stream.qos)
        self._routes: dict[str, tuple[str, ...]] = {}

    def streams_for(self, topic: str) -> tuple[str, ...]:
        streams = self._routes.get(topic)
        if streams is None:
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            streams = tuple(name for topic_filter, names in self.filters.items()
                            if topic_matches_sub(topic_filter, topic) for name in names)
            self._routes[topic] = streams
        return streams
