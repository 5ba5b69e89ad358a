"""Closing the windows of one stream's subscriptions once its watermark passed their ends: each through
its own final, or, for subscriptions that share their final query (shared_partial.py), one query for all
of them, split by routed value."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyarrow as pa

from arros_mqtt.engine.shared_partial import ROUTE_COLUMN, SHARED_FINAL, split_by_route
from arros_mqtt.engine.sql_session import SqlSession
from arros_mqtt.engine.stream_index import StreamReaders
from arros_mqtt.engine.subscription import Result, Subscription

Failed = Callable[[Subscription, Exception], None]
Closed = dict[object, tuple[Subscription, pa.Table]]  # route value -> (subscription, its closed state rows)


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
            table = _close(subscription, watermark, groups) if readers.shares_final(subscription) \
                else state.close(watermark)
        except Exception as exc:
            failed(subscription, exc)
            next_close = -math.inf
            continue
        subscription.stats.state_rows = state.rows
        subscription.stats.state_bytes = state.bytes
        next_close = min(next_close, state.earliest_window_end())
        results += _emitted(subscription, table)
    for group in groups.values():
        results += _finalize_shared(list(group.values()), session, failed)
    return results, next_close


def _close(subscription: Subscription, watermark: int, groups: dict[str, Closed]) -> pa.Table | None:
    """Take the closed rows into their group, to be finalized with the others; alone (its own final) when
    its routed value is in the group already."""
    plan, state = subscription.plan, subscription.operator
    closed = state.take_closed(watermark)
    group = groups.setdefault(plan.shared.final_key, {})
    if closed is not None and plan.route[1] in group:  # the same value twice
        return state.kernel.final(closed)
    if closed is not None:
        group[plan.route[1]] = (subscription, closed)
    return None


def _finalize_shared(members: list[tuple[Subscription, pa.Table]], session: SqlSession,
                     failed: Failed) -> list[Result]:
    """Closed windows of subscriptions sharing their final query: one query for all, split by value."""
    if not members:
        return []
    first = members[0][0].plan
    rows = pa.concat_tables([closed.append_column(ROUTE_COLUMN, pa.array([s.plan.route[1]] * closed.num_rows))
                             for s, closed in members])
    try:
        with session.holding(SHARED_FINAL, rows, rows.schema):
            parts = split_by_route(session.plan(first.shared.final).to_arrow_table(), first.shape.output_schema)
    except Exception as exc:
        for subscription, _ in members:
            failed(subscription, exc)
        return []
    return [result for subscription, _ in members
            for result in _emitted(subscription, parts.get(subscription.plan.route[1]))]


def _emitted(subscription: Subscription, table: pa.Table | None) -> list[Result]:
    if table is None or not table.num_rows:
        return []
    subscription.stats.rows_out += table.num_rows
    return [Result(subscription, table)]
