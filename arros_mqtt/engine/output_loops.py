"""Refusing subscriptions whose results would come back as their own input: an output loop.

A subscription reading stream S whose output (or late_output) template can render a topic S subscribes
to republishes its results into S, which runs it again: the message count grows exponentially and
survives a `drop` while the broker holds the loop's messages. The same holds for a chain: a reads S
and writes into T's topic, b reads T and writes into S's. The graph is streams, with an edge S -> T
when a subscription reading S may publish into T's topic filter (core/topics.py `may_match`); a new
subscription is refused when its edges close a cycle. Streams fed by connectors have no topic and
cannot be reached by results.
"""

from __future__ import annotations

from collections.abc import Iterable

from arros_mqtt.config import StreamConfig, SubscriptionConfig
from arros_mqtt.core.topics import may_match

Edge = tuple[str, str, str]  # (from stream, subscription name, to stream)


def output_loop(config: SubscriptionConfig, stream: str, streams: dict[str, StreamConfig],
                others: Iterable[tuple[SubscriptionConfig, str]]) -> str | None:
    """Why `config` (reading `stream`) would loop its results back into its input, or None. `others`:
    the running subscriptions with the streams they read (a replaced one left out)."""
    edges = [edge for other, source in others if other.name != config.name
             for edge in _edges(other, source, streams)]
    for _, _, target in _edges(config, stream, streams):
        path = _path(target, stream, edges)
        if path is not None:
            chain = " -> ".join([f"{config.name} writes into {target}",
                                 *(f"{sub} writes into {to}" for _, sub, to in path)])
            return (f"output loop: its results would come back as its own input ({chain}, which it reads); "
                    "publish to a topic no stream of this chain subscribes to")
    return None


def _edges(config: SubscriptionConfig, source: str, streams: dict[str, StreamConfig]) -> list[Edge]:
    templates = [t for t in (config.output, config.late_output) if t is not None]
    return [(source, config.name, name) for name, stream in streams.items()
            if stream.topic is not None and any(may_match(t, stream.topic.filter) for t in templates)]


def _path(start: str, goal: str, edges: list[Edge]) -> list[Edge] | None:
    """Edges leading from stream `start` to `goal` (empty when they are the same), None if none do."""
    if start == goal:
        return []
    seen, frontier = {start}, [(start, [])]
    while frontier:
        node, path = frontier.pop()
        for edge in edges:
            if edge[0] == node and edge[2] not in seen:
                if edge[2] == goal:
                    return [*path, edge]
                seen.add(edge[2])
                frontier.append((edge[2], [*path, edge]))
    return None
