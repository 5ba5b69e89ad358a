"""Rewrite one aggregate query into the SQL steps that keep it incrementally.

    SELECT tumble(ts, INTERVAL '10 seconds') AS window, machine, avg(temp) AS a
    FROM telemetry WHERE ok GROUP BY window, machine HAVING count(*) > 3

becomes, per micro-batch (`partial`, over the stream's rows):

    SELECT get_field(tumble(ts, INTERVAL '10 seconds'), 'start') AS __ws, ... AS __we, machine AS __k0,
           sum(temp) AS __a0_sum, count(temp) AS __a0_n, count(*) AS __a1
    FROM telemetry WHERE ok GROUP BY __ws, __we, __k0

`merge` compacts state rows by key, and `final` runs the
user's select list over state rows, aggregates replaced by their merge-and-finish form:

    SELECT named_struct('start', __ws, 'end', __we) AS "window", __k0 AS "machine",
           CAST(sum(__a0_sum) AS DOUBLE) / ... AS "a"
    FROM <state> GROUP BY __ws, __we, __k0 HAVING sum(__a1) > 3

When an aggregate cannot be merged (see aggregates.py), the state holds the projected input rows
instead (`mode = RAW`) and `final` aggregates them with the user's own aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass

from arros_mqtt.core.errors import SqlError
from arros_mqtt.engine import aggregates
from arros_mqtt.engine.sql_text import (
    AggregateCall,
    QueryText,
    Span,
    Token,
    aggregate_calls,
    calls,
    split_commas,
    split_query,
)
from arros_mqtt.engine.window_functions import HOP, SESSION, WINDOW_FUNCTIONS

PARTIAL = "partial"
RAW = "raw"
WINDOW_START, WINDOW_END = "__ws", "__we"


@dataclass(frozen=True)
class WindowCall:
    kind: str
    ts: str  # the event-time argument as written
    args: tuple[str, ...]  # interval arguments as written


@dataclass(frozen=True)
class IncrementalQuery:
    mode: str
    window: WindowCall | None
    keys: tuple[str, ...]  # state key columns (__ws, __we first when windowed)
    partial: str
    merge_exprs: tuple[str, ...]  # "merge AS column" for each partial column; none in RAW mode
    final_select: str  # the final query up to FROM ...
    final_tail: str  # ... and after it (GROUP BY, HAVING, ORDER BY)
    aggregates: tuple[str, ...]  # the aggregate functions used, for `arros check`
    calls: tuple[AggregateCall, ...] = ()  # the aggregate calls, in state column order (`__a{j}`)
    mergeables: tuple[aggregates.Mergeable, ...] = ()  # per call, its state columns (PARTIAL mode only)
    key_exprs: tuple[Span, ...] = ()  # the GROUP BY keys besides the window, in order (`__k{i}`)
    select_refs: tuple[tuple[str, int], ...] | None = None  # per select item ("window", 0), ("key", i) or
    # ("aggregate", j); None when an item is any other expression or the query has HAVING/ORDER BY/DISTINCT

    def merge(self, state: str) -> str | None:
        """Compacts state rows by key (None in RAW mode: state rows are input rows)."""
        if self.mode != PARTIAL:
            return None
        group = f" GROUP BY {', '.join(self.keys)}" if self.keys else ""
        return f"SELECT {', '.join([*self.keys, *self.merge_exprs])} FROM {state}{group}"

    def final(self, state: str) -> str:
        return f"{self.final_select} FROM {state}{self.final_tail}"


def rewrite(sql: str, aggregate_names: set[str], output_names: list[str]) -> IncrementalQuery:
    """The incremental form of `sql`; SqlError naming the part of the query that cannot be rewritten."""
    try:
        query = split_query(sql)
    except ValueError as exc:
        raise SqlError(f"cannot run this aggregate query continuously: {exc}") from None
    if len(query.select) != len(output_names):
        raise SqlError("SELECT * cannot be used with GROUP BY in a subscription: name the columns")
    groups = [_resolve_group(item, query) for item in query.group_by]
    window_items = [g for g in groups if _window_call(g) is not None]
    if len(window_items) > 1:
        raise SqlError("a query can GROUP BY only one window function (tumble, hop or session); found "
                       + ", ".join(w.text for w in window_items))
    window = _window_call(window_items[0]) if window_items else None
    key_spans = [g for g in groups if g not in window_items]
    for span in [*(i.expr for i in query.select), *([query.having] if query.having else []), *key_spans]:
        stray = calls(span, set(WINDOW_FUNCTIONS))
        if stray and not any(_same(span.tokens[a:b + 1], w.tokens) for a, b, _ in stray for w in window_items):
            raise SqlError(f"window function {stray[0][2]}(...) must be in GROUP BY (and selected as is)")
    clause_spans = [i.expr for i in query.select] + [s for s in (query.having, query.order_by) if s]
    calls_found = [c for span in clause_spans for c in aggregate_calls(span, aggregate_names)]
    if not query.group_by and not calls_found:
        if query.distinct:
            raise SqlError("SELECT DISTINCT over a stream is not supported: use GROUP BY with an aggregate")
        raise SqlError("aggregates and GROUP BY over the stream must be in the outermost SELECT; "
                       "nested aggregate queries are not supported")
    merge_plans = [aggregates.mergeable(c, j) for j, c in enumerate(calls_found)]
    mode = PARTIAL if all(p is not None for p in merge_plans) else RAW
    mergeables = tuple(p for p in merge_plans if p is not None) if mode == PARTIAL else ()
    if mode == PARTIAL:
        finals = [p.final for p in merge_plans if p is not None]
        columns = [col for p in merge_plans if p is not None for col in p.columns]
        state_exprs = [(c.name, c.partial) for c in columns]
    else:
        raws = [aggregates.raw(c, j) for j, c in enumerate(calls_found)]
        finals = [r.final for r in raws]
        state_exprs = [p for r in raws for p in r.projections]
    keys = [f"__k{i}" for i in range(len(key_spans))]
    bucket: list[tuple[str, str]] = []
    if window is not None:
        unit, length = _bucket_call(window)
        start = f"get_field({unit}, 'start')"  # the end by interval arithmetic: one UDF call per row, not two
        bucket = [(WINDOW_START, start), (WINDOW_END, f"{start} + {length}")]
    key_columns = [name for name, _ in bucket] + keys
    select = [*bucket, *zip(keys, (k.text for k in key_spans), strict=True), *state_exprs]
    partial = f"{query.prefix}SELECT " + ", ".join(f"{expr} AS {name}" for name, expr in select)
    partial += f" {query.from_where}"
    if mode == PARTIAL and key_columns:
        partial += " GROUP BY " + ", ".join(key_columns)
    merge_exprs = tuple(f"{c.merge} AS {c.name}" for c in columns) if mode == PARTIAL else ()
    replacer = _Replacer(query, calls_found, finals, key_spans, keys, window_items)
    items = [f"{replacer.rewrite(item.expr)} AS {_quote(name)}" for item, name in zip(query.select, output_names,
                                                                                     strict=True)]
    final_select = ("SELECT DISTINCT " if query.distinct else "SELECT ") + ", ".join(items)
    tail = f" GROUP BY {', '.join(key_columns)}" if key_columns else ""
    if query.having:
        tail += f" HAVING {replacer.rewrite(query.having)}"
    if query.order_by:
        tail += f" ORDER BY {replacer.rewrite(query.order_by)}"
    return IncrementalQuery(mode=mode, window=window, keys=tuple(key_columns), partial=partial,
                            merge_exprs=merge_exprs, final_select=final_select, final_tail=tail,
                            aggregates=tuple(sorted({c.name for c in calls_found})), calls=tuple(calls_found),
                            mergeables=mergeables,
                            key_exprs=tuple(key_spans), select_refs=_select_refs(query, calls_found, key_spans,
                                                                                 window_items))


def _select_refs(query: QueryText, found: list[AggregateCall], key_spans: list[Span],
                 windows: list[Span]) -> tuple[tuple[str, int], ...] | None:
    """What each select item is when all are the window, a key or one aggregate call as written."""
    if query.distinct or query.having or query.order_by:
        return None
    refs = []
    for item in query.select:
        tokens = item.expr.tokens
        whole = [j for j, c in enumerate(found) if c.start == tokens[0].start and c.end == tokens[-1].end]
        if any(_same(tokens, w.tokens) for w in windows):
            refs.append(("window", 0))
        elif keys := [i for i, k in enumerate(key_spans) if _same(tokens, k.tokens)]:
            refs.append(("key", keys[0]))
        elif whole:
            refs.append(("aggregate", whole[0]))
        else:
            return None
    return tuple(refs)


def _resolve_group(item: Span, query: QueryText) -> Span:
    """A GROUP BY item as an expression: ordinals and select aliases point at the select expression."""
    tokens = item.tokens
    if len(tokens) == 1 and tokens[0].kind == "num" and tokens[0].text.isdigit():
        position = int(tokens[0].text)
        if not 1 <= position <= len(query.select):
            raise SqlError(f"GROUP BY {position} is not a position in the select list")
        return query.select[position - 1].expr
    if len(tokens) == 1 and tokens[0].kind in ("ident", "qident"):
        name = tokens[0].text[1:-1] if tokens[0].kind == "qident" else tokens[0].text.lower()
        for select in query.select:
            if select.alias == name and not _same(select.expr.tokens, tokens):
                return select.expr
    return item


def _window_call(span: Span) -> WindowCall | None:
    tokens = span.tokens
    found = calls(span, set(WINDOW_FUNCTIONS))
    if len(found) != 1 or found[0][0] != 0 or found[0][1] != len(tokens) - 1:
        return None
    args = [Span(tuple(part), span.sql).text for part in split_commas(tokens[2:-1])]
    expected = 3 if found[0][2] == HOP else 2
    if len(args) != expected:
        raise SqlError(f"{found[0][2]}() takes {expected} arguments, got {len(args)}")
    return WindowCall(found[0][2], args[0], tuple(args[1:]))


def _bucket_call(window: WindowCall) -> tuple[str, str]:
    """Per row, the unit of state and its length: the window (tumble), the pane of one slide (hop), the
    one-row session [ts, ts + gap)."""
    if window.kind == SESSION:
        return f"session({window.ts}, {window.args[0]})", window.args[0]
    return f"tumble({window.ts}, {window.args[0]})", window.args[0]  # hop: args[0] is the slide


class _Replacer:
    """Rewrites select/HAVING/ORDER BY text for the final query over state rows."""

    def __init__(self, query: QueryText, found: list[AggregateCall], finals: list[str], key_spans: list[Span],
                 keys: list[str], windows: list[Span]) -> None:
        self.sql = query.sql
        self.aggregates = [(c.start, c.end, f"({f})") for c, f in zip(found, finals, strict=True)]
        window_struct = f"named_struct('start', {WINDOW_START}, 'end', {WINDOW_END})"
        targets = [(w.tokens, window_struct) for w in windows]
        targets += [(k.tokens, name) for k, name in zip(key_spans, keys, strict=True)]
        self.targets = sorted(targets, key=lambda t: -len(t[0]))

    def rewrite(self, span: Span) -> str:
        tokens = span.tokens
        edits = [a for a in self.aggregates if a[0] >= tokens[0].start and a[1] <= tokens[-1].end]
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if any(s <= token.start < e for s, e, _ in edits):
                i += 1
                continue
            matched = self._match(tokens, i)
            if matched:
                length, first, text = matched
                edits.append((tokens[first].start, tokens[i + length - 1].end, text))
                i += length
            else:
                i += 1
        return _apply(self.sql, tokens[0].start, tokens[-1].end, edits)

    def _match(self, tokens: tuple[Token, ...], i: int) -> tuple[int, int, str] | None:
        """(tokens matched from i, first token to replace, replacement) for a key or window occurrence."""
        if i > 0 and tokens[i - 1].text == "." and not _qualified(tokens, i - 2):
            return None
        for target, text in self.targets:
            candidates = [target]
            if len(target) == 3 and target[1].text == ".":
                candidates.append(target[2:])  # `t.machine` also matches `machine`
            for candidate in candidates:
                n = len(candidate)
                if _same(tokens[i:i + n], candidate) and not _continues(tokens, i + n):
                    first = i
                    if n == 1 and i >= 2 and tokens[i - 1].text == "." and len(target) == 1:
                        first = i - 2  # `machine` also matches `t.machine`
                    return n, first, text
        return None


def _qualified(tokens: tuple[Token, ...], i: int) -> bool:
    return i >= 0 and tokens[i].kind in ("ident", "qident")


def _continues(tokens: tuple[Token, ...], i: int) -> bool:
    return i < len(tokens) and tokens[i].text in ("(", ".")


def _same(a: tuple[Token, ...] | list[Token], b: tuple[Token, ...] | list[Token]) -> bool:
    return len(a) == len(b) and all(x.norm() == y.norm() for x, y in zip(a, b, strict=True))


def _apply(sql: str, start: int, end: int, edits: list[tuple[int, int, str]]) -> str:
    out, pos = [], start
    for edit_start, edit_end, text in sorted(edits):
        if edit_start < pos:
            continue
        out.append(sql[pos:edit_start])
        out.append(text)
        pos = edit_end
    out.append(sql[pos:end])
    return "".join(out)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
