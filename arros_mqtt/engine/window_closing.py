"""Closing the windows of one stream's subscriptions once its watermark passed their ends: each through
its own final, or, for subscriptions that share their final query (shared_partial.py), one query for all
of them, split by routed value.

Closing is atomic per group: the closed windows leave a subscription's state only after their final
ran. When it fails, the groups it fails on (fault_isolation.py) are dead-lettered with the error and
leave the state too (a deterministic error would fail them forever); every other window is published.
A shared final that fails falls back to each subscription's own."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyarrow as pa

from arros_mqtt.engine.fault_isolation import final_isolating
from arros_mqtt.engine.operators.window import Closing
from arros_mqtt.engine.shared_partial import ROUTE_COLUMN, SHARED_FINAL, split_by_route
from arros_mqtt.engine.sql_session import SqlSession
from arros_mqtt.engine.stream_index import StreamReaders
from arros_mqtt.engine.subscription import Result, Subscription

Failed = Callable[[Subscription, Exception], None]
Closed = dict[object, tuple[Subscription, Closing]]  # route value -> (subscription, its closing windows)


def close_windows(readers: StreamReaders, watermark: int, session: SqlSession,
                  failed: Failed) -> tuple[list[Result], float]:
    """The result rows of the windows that closed, and the earliest window end still open (-inf after a
    failure: try again on the next batch)."""
    results = []
    next_close = math.inf
    groups: dict[str, Closed] = {}  # shared final key -> the closed rows of its subscriptions
    for subscription in readers.windowed:
        state = subscription.operator
        try:
            results += _close(subscription, watermark, groups) if readers.shares_final(subscription) \
                else _close_alone(subscription, watermark)
        except Exception as exc:
            failed(subscription, exc)
            next_close = -math.inf
            continue
        _count_state(subscription)
        next_close = min(next_close, state.earliest_window_end())
    for group in groups.values():
        results += _finalize_shared(list(group.values()), session)
    return results, next_close


def _close_alone(subscription: Subscription, watermark: int) -> list[Result]:
    """The subscription's closed windows through its own final; poison groups as dead-letter results."""
    closing = subscription.operator.closing(watermark)
    if closing is None:
        return []
    if closing.rows is None:
        closing.commit()
        return []
    table, failed = final_isolating(subscription, closing.rows)
    closing.commit()
    return failed + _emitted(subscription, table)


def _close(subscription: Subscription, watermark: int, groups: dict[str, Closed]) -> list[Result]:
    """Put the closing windows into their group, to be finalized with the others; alone (its own final)
    when its routed value is in the group already."""
    plan = subscription.plan
    closing = subscription.operator.closing(watermark)
    if closing is None:
        return []
    group = groups.setdefault(plan.shared.final_key, {})
    if closing.rows is None or plan.route[1] in group:  # nothing closes, or the same value twice
        return _close_alone(subscription, watermark)
    group[plan.route[1]] = (subscription, closing)
    return []


def _finalize_shared(members: list[tuple[Subscription, Closing]], session: SqlSession) -> list[Result]:
    """Closed windows of subscriptions sharing their final query: one query for all, split by value; if
    it fails, each through its own final (which sets the failing groups apart)."""
    if not members:
        return []
    first = members[0][0].plan
    rows = pa.concat_tables([c.rows.append_column(ROUTE_COLUMN, pa.array([s.plan.route[1]] * c.rows.num_rows))
                             for s, c in members])
    try:
        with session.holding(SHARED_FINAL, rows, rows.schema):
            parts = split_by_route(session.plan(first.shared.final).to_arrow_table(), first.shape.output_schema)
    except Exception:
        results = []
        for subscription, closing in members:
            table, failed = final_isolating(subscription, closing.rows)
            closing.commit()
            _count_state(subscription)
            results += failed + _emitted(subscription, table)
        return results
    for subscription, closing in members:
        closing.commit()
        _count_state(subscription)
    return [result for subscription, _ in members
            for result in _emitted(subscription, parts.get(subscription.plan.route[1]))]


def _emitted(subscription: Subscription, table: pa.Table | None) -> list[Result]:
    if table is None or not table.num_rows:
        return []
    subscription.stats.rows_out += table.num_rows
    return [Result(subscription, table)]


def _count_state(subscription: Subscription) -> None:
    subscription.stats.state_rows = subscription.operator.rows
    subscription.stats.state_bytes = subscription.operator.bytes
