"""Which aggregates merge from partial state, and the SQL for each step.

A mergeable aggregate becomes a few partial columns computed per micro-batch (`partial`), a way to
combine partial rows (`merge`, an aggregate over state rows) and the user's value (`final`, an
aggregate over state rows). Everything is SQL text DataFusion runs; no arithmetic happens in Python.

| aggregate | partial state |
|---|---|
| count, sum, min, max, bool_and, bool_or, bit_and, bit_or, bit_xor | the same aggregate |
| avg / mean | sum, count |
| var, var_samp, var_pop, stddev, stddev_samp, stddev_pop (and aliases) | count, mean, M2 |
| first_value / last_value with one ORDER BY key | the value and its ordering key |

Anything else (count(DISTINCT ...), median, percentiles, array_agg, string_agg, approx_*,
first_value without ORDER BY, user-defined aggregates) cannot be merged this way: a subscription
using one keeps the projected input rows of each open window and aggregates them when it closes.

count, sum, min, max and avg of one plain column (or count(*)), without DISTINCT, ORDER BY or FILTER,
also say which pyarrow hash aggregate computes each partial column, for the pyarrow kernel
(kernels/arrow_aggregate.py): one description of the state serves both kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from arros_mqtt.engine.sql_text import AggregateCall, identifier, references_columns

_SAME = {"count", "sum", "min", "max", "bool_and", "bool_or", "bit_and", "bit_or", "bit_xor"}
_MERGE_WITH = {"count": "sum"}
_AVG = {"avg", "mean"}
_VARIANCE = {"var": "samp", "var_samp": "samp", "var_sample": "samp", "var_pop": "pop", "var_population": "pop",
             "stddev": "samp", "stddev_samp": "samp", "stddev_pop": "pop"}
_FIRST_LAST = {"first_value", "last_value"}
_ARROW = {"count", "sum", "min", "max"}  # the same function as a pyarrow hash aggregate
_ARROW_MERGE = {"count": "sum", "count_all": "sum"}


@dataclass(frozen=True)
class PartialColumn:
    """One state column: `partial` per micro-batch, combined across batches by `merge`."""

    name: str
    partial: str  # SQL aggregate over input rows
    merge: str  # SQL aggregate over state rows giving the combined partial
    function: str | None = None  # the partial as a pyarrow hash aggregate (count, count_all, sum, min, max)
    source: str | None = None  # ... over this column, as DataFusion resolves a bare name (None: count(*))

    @property
    def arrow_merge(self) -> str:
        """The pyarrow hash aggregate combining partials (needs `function`)."""
        return _ARROW_MERGE.get(self.function, self.function)


@dataclass(frozen=True)
class Mergeable:
    columns: tuple[PartialColumn, ...]
    final: str  # aggregate over state rows giving the user's value
    kind: str | None = None  # count, sum, min, max or avg when pyarrow computes every column; else None


@dataclass(frozen=True)
class RawAggregate:
    projections: tuple[tuple[str, str], ...]  # (state column, expression over input rows)
    final: str  # the user's aggregate over the projected state columns


def mergeable(call: AggregateCall, index: int) -> Mergeable | None:
    """The partial/merge/final SQL for one aggregate call, or None if it cannot be merged."""
    name = call.name
    if call.within_group or (call.distinct and name not in ("min", "max")):
        return None
    where = f" FILTER (WHERE {call.filter.text})" if call.filter else ""
    col = f"__a{index}"
    arrow = _arrow_partial(call)
    if name in _SAME and len(call.args) == 1 and not call.order_by:
        arg = call.args[0].text
        merge = _MERGE_WITH.get(name, name)
        function, source = arrow if arrow and name in _ARROW else (None, None)
        column = PartialColumn(col, f"{name}({arg}){where}", f"{merge}({col})", function, source)
        return Mergeable((column,), f"{merge}({col})", name if function else None)
    if name in _AVG and len(call.args) == 1:
        arg = call.args[0].text
        s, n = f"{col}_sum", f"{col}_n"
        source = arrow[1] if arrow else None
        on_arrow = source is not None
        return Mergeable((PartialColumn(s, f"sum({arg}){where}", f"sum({s})", "sum" if on_arrow else None, source),
                          PartialColumn(n, f"count({arg}){where}", f"sum({n})", "count" if on_arrow else None,
                                        source)),
                         f"CAST(sum({s}) AS DOUBLE) / CAST(NULLIF(sum({n}), 0) AS DOUBLE)",
                         "avg" if on_arrow else None)
    if name in _VARIANCE and len(call.args) == 1:
        arg = call.args[0].text
        x = f"CAST({arg} AS DOUBLE)"
        n, mean, m2 = f"{col}_n", f"{col}_mean", f"{col}_m2"
        total = f"CAST(NULLIF(sum({n}), 0) AS DOUBLE)"
        weighted = f"sum({n} * {mean})"
        combined_m2 = f"(sum({m2}) + sum({n} * {mean} * {mean}) - {weighted} * {weighted} / {total})"
        spread = f"greatest({combined_m2}, 0.0)"
        divisor = total if _VARIANCE[name] == "pop" else f"CASE WHEN sum({n}) > 1 THEN {total} - 1 END"
        final = f"{spread} / {divisor}"
        if name.startswith("stddev"):
            final = f"sqrt({final})"
        return Mergeable((PartialColumn(n, f"count({arg}){where}", f"sum({n})"),
                          PartialColumn(mean, f"avg({x}){where}", f"{weighted} / {total}"),
                          PartialColumn(m2, f"coalesce(var_pop({x}){where}, 0.0) * count({arg}){where}",
                                        f"coalesce({combined_m2}, 0.0)")),
                         final)
    if name in _FIRST_LAST and len(call.args) == 1 and len(call.order_by) == 1:
        arg = call.args[0].text
        key, direction = call.order_by[0][0].text, call.order_by[0][1]
        value, ordering = f"{col}_v", f"{col}_k"
        by_partial = f"ORDER BY {key} {direction}"
        by_state = f"ORDER BY {ordering} {direction}"
        return Mergeable((PartialColumn(value, f"{name}({arg} {by_partial}){where}", f"{name}({value} {by_state})"),
                          PartialColumn(ordering, f"{name}({key} {by_partial}){where}",
                                        f"{name}({ordering} {by_state})")),
                         f"{name}({value} {by_state})")
    return None


def _arrow_partial(call: AggregateCall) -> tuple[str, str | None] | None:
    """(pyarrow hash aggregate, the column it reads) for a call of one plain column or count(*)/count(1)."""
    if call.distinct or call.filter or call.order_by or call.within_group or len(call.args) != 1:
        return None
    arg = call.args[0]
    if call.name == "count" and (arg.text == "*" or (len(arg.tokens) == 1 and arg.tokens[0].kind == "num")):
        return "count_all", None
    if len(arg.tokens) != 1 or arg.tokens[0].kind not in ("ident", "qident"):
        return None
    return call.name, identifier(arg.tokens[0])


def raw(call: AggregateCall, index: int) -> RawAggregate:
    """The aggregate re-pointed at projected state columns (`__a{index}_{n}`), keeping its literal arguments."""
    projections: list[tuple[str, str]] = []

    def project(text: str) -> str:
        name = f"__a{index}_{len(projections)}"
        projections.append((name, text))
        return name

    args = [project(a.text) if references_columns(a) else a.text for a in call.args]
    inner = ("DISTINCT " if call.distinct else "") + ", ".join(args)
    if call.order_by:
        inner += " ORDER BY " + ", ".join(f"{project(e.text)} {d}" for e, d in call.order_by)
    text = f"{call.name}({inner})"
    if call.within_group:
        text += " WITHIN GROUP (ORDER BY " + ", ".join(f"{project(e.text)} {d}" for e, d in call.within_group) + ")"
    if call.filter:
        text += f" FILTER (WHERE {project(call.filter.text)})"
    return RawAggregate(tuple(projections), text)
