"""Output topics are restricted: never under the control prefix (control, replies, dead letters, catalogue,
health) or a `$` topic, in the config file and over the control topic alike; a subscription whose results
would come back as its own input (directly or through a chain) is refused; max_output_rate has a default."""

from __future__ import annotations

import pytest

from arros_mqtt.config import SubscriptionConfig, parse_config
from arros_mqtt.control.protocol import ControlError, check_outputs
from arros_mqtt.core.errors import ConfigError, SqlError
from arros_mqtt.core.topics import OutputTemplate, may_match
from arros_mqtt.engine import Engine

STREAMS = {
    "telemetry": {"topic": "factory/{line}/{machine}/telemetry", "schema": {"temp": "float64"}},
    "derived": {"topic": "derived/{machine}", "schema": {"temp": "float64"}},
    "alerts": {"topic": "alerts/{machine}/#", "schema": {"temp": "float64"}},
}


def config(output: str, key: str = "output", prefix: str | None = None):
    sub = {"sql": "SELECT tumble(_received_at, INTERVAL '1 second') AS window, count(*) AS n FROM telemetry "
                  "GROUP BY window", "output": "ok/x", key: output}
    data = {"streams": {"telemetry": STREAMS["telemetry"]}, "subscriptions": {"s": sub}}
    if prefix is not None:
        data["control"] = {"prefix": prefix}
    return parse_config(data)


@pytest.mark.parametrize("key", ["output", "late_output"])
@pytest.mark.parametrize(("topic", "words"), [
    ("arros/control", "control prefix"),
    ("arros/deadletter/telemetry", "control prefix"),
    ("arros/catalog/{machine}", "control prefix"),
    ("arros", "control prefix"),
    ("$SYS/broker/x", "$ topic"),
    ("$share/g/x", "$ topic"),
    ("{machine}/out", "filled from a column"),
    ("x{machine}/out", "filled from a column"),
])
def test_the_config_file_refuses_outputs_under_the_control_prefix_or_a_dollar_topic(key, topic, words):
    with pytest.raises(ConfigError) as info:
        config(topic, key)
    assert info.value.key == f"subscriptions.s.{key}" and words in info.value.message


def test_the_rule_follows_the_configured_prefix():
    assert config("arros/x", prefix="plant/arros").subscriptions["s"].output.text == "arros/x"
    assert config("arrosx/y").subscriptions["s"].output.text == "arrosx/y"  # not under "arros/"
    with pytest.raises(ConfigError, match="control prefix"):
        config("plant/arros/health", prefix="plant/arros")


@pytest.mark.parametrize("topic", ["arros/status/x", "$SYS/x", "{machine}"])
def test_the_control_topic_refuses_the_same_outputs(topic):
    sub = SubscriptionConfig(name="s", sql="SELECT 1", output=OutputTemplate.parse(topic), origin="control")
    with pytest.raises(ControlError) as info:
        check_outputs(sub, "arros")
    assert info.value.code == "forbidden"
    late = SubscriptionConfig(name="s", sql="SELECT 1", output=OutputTemplate.parse("ok/x"),
                              late_output=OutputTemplate.parse(topic), origin="control")
    with pytest.raises(ControlError, match="late_output"):
        check_outputs(late, "arros")


@pytest.mark.parametrize(("template", "topic_filter", "matches"), [
    ("factory/l1/{machine}/telemetry", "factory/+/+/telemetry", True),
    ("factory/{line}/m1/telemetry", "factory/+/+/telemetry", True),
    ("factory/l1/m1", "factory/+/+/telemetry", False),
    ("factory/l1/m1/telemetry/x", "factory/+/+/telemetry", False),
    ("factory/out/{machine}", "factory/+/telemetry", False),  # only for a machine named "telemetry"
    ("alerts", "alerts/#", True),
    ("alerts/a/b/c", "alerts/#", True),
    ("derived/x_{machine}", "derived/x_1", False),
    ("derived/x_{machine}", "derived/+", True),
    ("out/{machine}", "#", True),
])
def test_may_match(template, topic_filter, matches):
    assert may_match(OutputTemplate.parse(template), topic_filter) is matches


def engine() -> Engine:
    return Engine(parse_config({"streams": STREAMS}).streams)


def sub(name: str, stream: str, output: str, late_output: str | None = None) -> SubscriptionConfig:
    sql = (f"SELECT tumble(_received_at, INTERVAL '1 second') AS window, machine, count(*) AS n FROM {stream} "
           "GROUP BY window, machine") if late_output else f"SELECT machine, temp FROM {stream}"
    return SubscriptionConfig(name=name, sql=sql, output=OutputTemplate.parse(output),
                              late_output=OutputTemplate.parse(late_output) if late_output else None)


def test_an_output_into_its_own_input_is_refused():
    e = engine()
    with pytest.raises(SqlError) as info:
        e.add(sub("loop", "telemetry", "factory/l1/{machine}/telemetry"))
    assert info.value.code == "output_loop" and "loop writes into telemetry" in str(info.value)
    with pytest.raises(SqlError, match="output loop"):
        e.add(sub("late_loop", "derived", "elsewhere/x", late_output="derived/{machine}"))
    assert e.subscriptions == {}


def test_a_chain_whose_output_feeds_back_is_refused_and_a_chain_that_ends_is_not():
    e = engine()
    e.add(sub("a", "telemetry", "derived/{machine}"))  # telemetry -> derived
    e.add(sub("b", "derived", "alerts/{machine}"))  # derived -> alerts: a chain that ends
    with pytest.raises(SqlError) as info:
        e.add(sub("c", "alerts", "factory/l1/{machine}/telemetry"))  # alerts -> telemetry: back to the start
    assert info.value.code == "output_loop"
    assert "c writes into telemetry -> a writes into derived -> b writes into alerts" in str(info.value)
    assert set(e.subscriptions) == {"a", "b"}
    e.install(e.build(sub("b", "derived", "sink/{machine}")), replace=True)  # the replacement ends the chain
    e.add(sub("c", "alerts", "factory/l1/{machine}/telemetry"))


def test_max_output_rate_has_a_safe_default():
    assert parse_config({}).control.max_output_rate == 100_000
    assert parse_config({"control": {"max_output_rate": 0}}).control.max_output_rate == 0
