"""The amqtt config Arros builds for the embedded broker (listeners, plugins, a user's YAML), without starting it."""

from __future__ import annotations

import pytest

from arros_mqtt.config import EmbeddedConfig
from arros_mqtt.core.errors import ConfigError
from arros_mqtt.transport.embedded_broker import ANONYMOUS_AUTH, PLUGIN_PATH, WILL_ACL_PATH, amqtt_config


def test_default_config_is_anonymous_with_our_plugin_on_listen():
    config = amqtt_config(EmbeddedConfig(listen="127.0.0.1:1999"))
    assert config["listeners"]["default"]["bind"] == "127.0.0.1:1999"
    assert list(config["plugins"]) == [ANONYMOUS_AUTH, WILL_ACL_PATH, PLUGIN_PATH]


def test_yaml_keeps_its_listeners_and_plugins_and_listen_wins(tmp_path):
    path = tmp_path / "amqtt.yaml"
    path.write_text(f"""
listeners:
  default: {{type: tcp, bind: 0.0.0.0:1883, max_connections: 5}}
  ws: {{type: ws, bind: 127.0.0.1:9001}}
plugins:
  - {ANONYMOUS_AUTH}: {{allow_anonymous: false}}
  - amqtt.plugins.topic_checking.TopicTabooPlugin
""")
    config = amqtt_config(EmbeddedConfig(listen="127.0.0.1:1999", broker_config=str(path)))
    assert config["listeners"]["default"] == {"type": "tcp", "bind": "127.0.0.1:1999", "max_connections": 5}
    assert config["listeners"]["ws"]["bind"] == "127.0.0.1:9001"
    assert config["plugins"] == {ANONYMOUS_AUTH: {"allow_anonymous": False},
                                 "amqtt.plugins.topic_checking.TopicTabooPlugin": {}, WILL_ACL_PATH: {},
                                 PLUGIN_PATH: {}}


@pytest.mark.parametrize("text, words", [
    ("plugins: {amqtt.plugins.topic_checking.TopicTabooPlugin: {}}", "auth plugin"),
    ("listeners: {}", "auth plugin"),
    ("- just\n- a list", "expected a mapping"),
    ("plugins: [unclosed", "invalid YAML"),
])
def test_bad_yaml_is_a_config_error_naming_the_file(tmp_path, text, words):
    path = tmp_path / "amqtt.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        amqtt_config(EmbeddedConfig(broker_config=str(path)))
    assert info.value.file == str(path) and words in str(info.value)
