"""The OPC UA connector's options without a server: each error names its key."""

from __future__ import annotations

import pytest

from arros_mqtt.connectors.opcua import OpcuaConnector
from arros_mqtt.core.connector_kinds import OptionError

NODES = [{"name": "speed", "node": "ns=2;i=1002"}, {"name": "count", "node": "ns=2;s=Line1.Count"},
         {"name": "running", "node": "ns=2;s=Line1.Running"}]


@pytest.mark.parametrize(("options", "error"), [
    ({"url": "http://x", "nodes": NODES}, "url: 'http://x' is not an OPC UA endpoint"),
    ({"url": "opc.tcp://x:4840", "nodes": [{"name": "a", "node": "2;i=x"}]}, "nodes[0].node: '2;i=x' is not a node"),
    ({"url": "opc.tcp://x:4840", "nodes": []}, "nodes: is empty"),
    ({"url": "opc.tcp://x:4840", "nodes": NODES + NODES[:1]}, "nodes[3].name: 'speed' appears twice"),
    ({"url": "opc.tcp://x:4840", "nodes": NODES, "sampling_interval": 5}, "sampling_interval: expected a duration"),
])
def test_option_errors_name_the_key(options, error):
    with pytest.raises(OptionError) as info:
        OpcuaConnector.parse_options(options)
    assert str(info.value).startswith(error)
