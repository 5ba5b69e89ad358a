from __future__ import annotations

import pyarrow as pa
import pytest

from arros_mqtt.core.topics import OutputTemplate, TopicPattern


def test_captures_become_columns():
    pattern = TopicPattern.parse("factory/{line}/{machine}/telemetry")
    assert pattern.filter == "factory/+/+/telemetry"
    columns = pattern.capture_columns(pa.array(["factory/l1/m1/telemetry", "factory/l2/m9/telemetry"]))
    assert columns["line"].to_pylist() == ["l1", "l2"] and columns["machine"].to_pylist() == ["m1", "m9"]


def test_wildcards_pass_through():
    assert TopicPattern.parse("plant/+/{machine}/#").filter == "plant/+/+/#"


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a/{x}y", "a/{x}/{x}", "a/{1x}"])
def test_bad_patterns(bad):
    with pytest.raises(ValueError):
        TopicPattern.parse(bad)


def test_template_fills_levels_and_neutralises_values():
    template = OutputTemplate.parse("alerts/{line}/{machine}")
    table = pa.table({"line": ["l1", "a/b", None], "machine": [1, 2, 3]})
    assert template.render(table) == ["alerts/l1/1", "alerts/a_b/2", "alerts/null/3"]
    assert OutputTemplate.parse("fixed/topic").render(table) == "fixed/topic"


@pytest.mark.parametrize("bad", ["a/+", "a/#", "a/{b", "a/{}", "a/{x y}"])
def test_bad_templates(bad):
    with pytest.raises(ValueError):
        OutputTemplate.parse(bad)
