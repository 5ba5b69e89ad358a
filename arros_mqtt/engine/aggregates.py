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
"""

from __future__ import annotations

from dataclasses import dataclass

from arros_mqtt.engine.sql_text import AggregateCall, references_columns

_SAME = {"count", "sum", "min", "max", "bool_and", "bool_or", "bit_and", "bit_or", "bit_xor"}
_MERGE_WITH = {"count": "sum"}
_AVG = {"avg", "mean"}
_VARIANCE = {"var": "samp", "var_samp": "samp", "var_sample": "samp", "var_pop": "pop", "var_population": "pop",
             "stddev": "samp", "stddev_samp": "samp", "stddev_pop": "pop"}
_FIRST_LAST = {"first_value", "last_value"}


@dataclass(frozen=True)
class PartialColumn:
    name: str
    partial: str  # aggregate over input rows
    merge: str  # aggregate over state rows giving the combined partial


@dataclass(frozen=True)
class Mergeable:
    columns: tuple[PartialColumn, ...]
    final: str  # aggregate over state rows giving the user's value


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
    if name in _SAME and len(call.args) == 1 and not call.order_by:
        arg = call.args[0].text
        merge = _MERGE_WITH.get(name, name)
        return Mergeable((PartialColumn(col, f"{name}({arg}){where}", f"{merge}({col})"),), f"{merge}({col})")
    if name in _AVG and len(call.args) == 1:
        arg = call.args[0].text
        s, n = f"{col}_sum", f"{col}_n"
        return Mergeable((PartialColumn(s, f"sum({arg}){where}", f"sum({s})"),
                          PartialColumn(n, f"count({arg}){where}", f"sum({n})")),
                         f"CAST(sum({s}) AS DOUBLE) / CAST(NULLIF(sum({n}), 0) AS DOUBLE)")
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
