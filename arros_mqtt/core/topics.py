"""Topic patterns with `{name}` captures (streams) and `{column}` templates (subscription outputs).

A stream topic `factory/{line}/{machine}/telemetry` subscribes to `factory/+/+/telemetry` and turns
levels 1 and 2 of each message's topic into the string columns `line` and `machine`. An output
template `alerts/{line}/{machine}` fills each level from the result row. Both are computed per
micro-batch with Arrow compute functions, never per message in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

_CAPTURE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NULL_LEVEL = "null"


@dataclass(frozen=True)
class TopicPattern:
    """A subscription filter plus the topic levels captured as columns."""

    text: str
    filter: str
    captures: tuple[tuple[str, int], ...]  # (column name, level index)

    @classmethod
    def parse(cls, text: str) -> TopicPattern:
        """Validate per MQTT 3.1.1/5 filter rules; ValueError says which level is wrong."""
        if not isinstance(text, str) or not text:
            raise ValueError("a topic must be a non-empty string")
        levels = text.split("/")
        captures: list[tuple[str, int]] = []
        filter_levels = []
        for i, level in enumerate(levels):
            if match := _CAPTURE.match(level):
                name = match.group(1)
                if name in dict(captures):
                    raise ValueError(f"capture {{{name}}} appears twice in {text!r}")
                captures.append((name, i))
                filter_levels.append("+")
            elif "{" in level or "}" in level:
                raise ValueError(f"level {level!r} of {text!r}: a capture must be a whole level like {{machine}}")
            elif level == "#" and i != len(levels) - 1:
                raise ValueError(f"'#' must be the last level of {text!r}")
            elif ("#" in level or "+" in level) and level not in ("#", "+"):
                raise ValueError(f"level {level!r} of {text!r}: '+' and '#' must stand alone in a level")
            else:
                filter_levels.append(level)
        return cls(text=text, filter="/".join(filter_levels), captures=tuple(captures))

    def capture_columns(self, topics: pa.Array) -> dict[str, pa.Array]:
        """The captured levels of each topic in `topics`, as string columns."""
        if not self.captures:
            return {}
        levels = pc.split_pattern(topics, "/")
        return {name: pc.list_element(levels, index) for name, index in self.captures}


@dataclass(frozen=True)
class OutputTemplate:
    """An output topic like `alerts/{line}/{machine}`, filled from result columns."""

    text: str
    parts: tuple[tuple[bool, str], ...]  # (is_column, literal text or column name)

    @classmethod
    def parse(cls, text: str) -> OutputTemplate:
        if not isinstance(text, str) or not text:
            raise ValueError("an output topic must be a non-empty string")
        if "+" in text or "#" in text:
            raise ValueError(f"output topic {text!r} may not contain the wildcards '+' or '#'")
        parts: list[tuple[bool, str]] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            if match.start() > pos:
                parts.append((False, text[pos : match.start()]))
            name = match.group(1).strip()
            if not _IDENTIFIER.match(name):
                raise ValueError(f"{{{match.group(1)}}} in {text!r} is not a column name")
            parts.append((True, name))
            pos = match.end()
        if pos < len(text):
            parts.append((False, text[pos:]))
        if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
            raise ValueError(f"unbalanced '{{' or '}}' in output topic {text!r}")
        return cls(text=text, parts=tuple(parts))

    @property
    def columns(self) -> list[str]:
        return [name for is_column, name in self.parts if is_column]

    def render(self, table: pa.Table) -> list[str] | str:
        """One topic per row (or the constant topic when the template has no columns).

        Values have '/', '+' and '#' replaced by '_' so a value can never add levels or wildcards;
        a null fills its level with "null".
        """
        if not self.columns:
            return self.text
        pieces = []
        for is_column, value in self.parts:
            if not is_column:
                pieces.append(value)
                continue
            column = pc.cast(table.column(value), pa.string())
            column = pc.replace_substring_regex(column, r"[/+#]", "_")
            pieces.append(pc.fill_null(column, NULL_LEVEL))
        return pc.binary_join_element_wise(*pieces, "").to_pylist()


def reserved_output(template: OutputTemplate, prefix: str) -> str | None:
    """Why results may not go to `template`, or None: topics under the control prefix (control requests,
    replies, dead letters, catalogue, health) and `$` topics are Arros's and the broker's own. The first
    level must be literal text, so no column value can put a result there."""
    first = template.text.split("/", 1)[0]
    if "{" in first:
        return (f"the first level of {template.text!r} is filled from a column: a value could put results "
                f"under {prefix}/ or a $ topic; start it with literal text")
    if first.startswith("$"):
        return f"{template.text!r} is a $ topic (the broker's own, e.g. $SYS)"
    if template.text == prefix or template.text.startswith(prefix.rstrip("/") + "/"):
        return (f"{template.text!r} is under the control prefix {prefix!r} (control requests, replies, dead "
                "letters, catalogue and health)")
    return None


def may_match(template: OutputTemplate, topic_filter: str) -> bool:
    """Whether the topics `template` renders match `topic_filter` (an MQTT filter with + and #) whatever
    the row's values: a level filled from a column matches `+` and `#`, not a literal level (that would
    take one particular value: such a data-dependent loop dies out or hits `max_output_rate`)."""
    levels = template.text.split("/")
    filters = topic_filter.split("/")
    for i, wanted in enumerate(filters):
        if wanted == "#":
            return True
        if i >= len(levels):
            return False
        if wanted != "+" and levels[i] != wanted:  # a literal filter level: only the same literal level
            return False
    return len(levels) == len(filters)
