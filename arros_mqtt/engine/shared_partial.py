"""One partial aggregation per micro-batch for many window subscriptions that differ only in one value.

Thousands of window subscriptions on one stream are usually one query per device:
`SELECT tumble(ts, ...) AS w, count(*), avg(temp) FROM telemetry WHERE machine = 'm42' GROUP BY w`. Each
would run its own partial aggregation over every micro-batch it matches. Subscriptions whose partial
SQL (incremental.py) is the same text except for the routed literal (equality_skip.py) instead share one
query: the literal's conjunct becomes TRUE and the routed column becomes one more group key
(`__route`); its result is split by that key and each subscription folds its own slice into its state,
exactly the rows its own partial query would have produced. When windows close, the closed rows of
subscriptions that also share the final query (same select list, HAVING, ORDER BY) are finalized by one
query grouped by `__route` too, and split again.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from arros_mqtt.engine.equality_skip import Route
from arros_mqtt.engine.incremental import IncrementalQuery
from arros_mqtt.engine.sql_text import Token, tokenize, top_level

ROUTE_COLUMN = "__route"
SHARED_FINAL = "__shared_final"  # the table closed rows of a group are registered as for its final query


@dataclass(frozen=True)
class SharedPartial:
    key: str  # the partial SQL with the routed literal blanked out: subscriptions with equal keys share
    sql: str  # the partial for every value at once, grouped by ROUTE_COLUMN as well
    final_key: str  # ... and the final query too: subscriptions with equal final keys share closing
    final: str | None  # the final query over the closed rows of all of them (SHARED_FINAL), by ROUTE_COLUMN


def share(query: IncrementalQuery, route: Route) -> SharedPartial | None:
    """The shared form of a routed subscription's queries; None when the text is not plain enough to
    rewrite safely (the literal written more than once, a qualified column, a WITH prefix, ...)."""
    group = f" GROUP BY {', '.join(query.keys)}"
    if not query.keys or not query.final_tail.startswith(group):
        return None
    partial = share_partial(query.partial, route)
    if partial is None:
        return None
    key, sql = partial
    tail = group + f", {ROUTE_COLUMN}" + query.final_tail[len(group):]
    final = f"{query.final_select}, {ROUTE_COLUMN} FROM {SHARED_FINAL}{tail}"
    return SharedPartial(key, sql, f"{key}\x01{query.final_select}\x01{query.final_tail}", final)


def share_partial(partial_sql: str, route: Route) -> tuple[str, str] | None:
    """(key, shared SQL) of one partial query: its routed conjunct TRUE, the routed column a group key."""
    column, value = route
    try:
        tokens = tokenize(partial_sql)
    except ValueError:
        return None
    if not tokens or tokens[0].word != "select" or sum(_is_literal(t, value) for t in tokens) != 1:
        return None
    span = _conjunct(tokens, column, value)
    from_index = _top_level(tokens, "from")
    group_index = _top_level(tokens, "group")
    if span is None or from_index is None or group_index is None or not from_index < span[0] < group_index:
        return None
    start, end = tokens[span[0]].start, tokens[span[1]].end
    key = partial_sql[:start] + "\x00" + partial_sql[end:]
    cut = tokens[from_index].start
    sql = (partial_sql[:cut].rstrip() + f", {tokens[span[0] if tokens[span[0]].kind == 'ident' else span[1]].text} "
           f"AS {ROUTE_COLUMN} " + partial_sql[cut:start] + "TRUE" + partial_sql[end:] + f", {ROUTE_COLUMN}")
    return key, sql


def split_by_route(table: pa.Table, schema: pa.Schema) -> dict[object, pa.Table]:
    """The shared query's rows per routed value, in each subscription's schema (state or output)."""
    if table.num_rows == 0:
        return {}
    table = table.take(pc.sort_indices(table.column(ROUTE_COLUMN)))
    values = table.column(ROUTE_COLUMN).to_pylist()
    parts, start = {}, 0
    for position in range(1, len(values) + 1):
        if position == len(values) or values[position] != values[start]:
            if values[start] is not None:
                part = table.slice(start, position - start).select(schema.names)
                try:
                    parts[values[start]] = part.cast(schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                    parts[values[start]] = part  # as the subscription's own final query would give it
            start = position
    return parts


def _is_literal(token: Token, value: object) -> bool:
    if isinstance(value, str):
        return token.kind == "str" and token.text[1:-1].replace("''", "'") == value
    return token.kind == "num" and token.text == str(value)


def _conjunct(tokens: list[Token], column: str, value: object) -> tuple[int, int] | None:
    """Token indexes of `column = literal` (or `literal = column`), the column unqualified."""
    for i in range(len(tokens) - 2):
        a, op, b = tokens[i:i + 3]
        if op.text != "=":
            continue
        column_first = a.kind == "ident" and a.text.lower() == column.lower() and _is_literal(b, value)
        literal_first = _is_literal(a, value) and b.kind == "ident" and b.text.lower() == column.lower()
        if not (column_first or literal_first):
            continue
        before = tokens[i - 1].text if i else ""
        after = tokens[i + 3].text if i + 3 < len(tokens) else ""
        if before == "." or after == ".":
            return None
        return i, i + 2
    return None


def _top_level(tokens: list[Token], word: str) -> int | None:
    return next((index for index, token in top_level(tokens) if token.word == word), None)
