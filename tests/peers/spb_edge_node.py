"""A Sparkplug B edge node with one device, driven by mqtt-spb-wrapper (an implementation independent
of Arros). Runs under .venv-spb's Python (paho-mqtt 1.6.1, protobuf 3.20.3).

    spb_edge_node.py PORT GROUP NODE DEVICE COUNT [--data-first]

Publishes NBIRTH, DBIRTH, then COUNT DDATA messages (temp: Double, count: Int64, running: Boolean,
state: String), printing each DDATA's values as a JSON line. With --data-first it publishes one
DDATA before any birth and waits (up to 20 s) for the host's NCMD `Node Control/Rebirth`, printing
`{"rebirth": true}` when it arrives, then goes on as above. Ends with a graceful NDEATH.
"""

import json
import sys
import threading
import time

from mqtt_spb_wrapper import MqttSpbEntityDevice, MqttSpbEntityEdgeNode


def main() -> None:
    port, group, node_id, device_id, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    data_first = "--data-first" in sys.argv
    rebirth = threading.Event()

    # The wrapper's own rebirth command registers `publish_birth()`'s result (False) as its callback, which
    # then fails when an NCMD arrives: register the command with a callback that works.
    node = MqttSpbEntityEdgeNode(group, node_id, include_spb_rebirth=False)
    node.attributes.set_value("vendor", "spb-wrapper")
    node.data.set_value("uptime", 0)
    node.commands.set_value("Node Control/Rebirth", False, callback_on_change=lambda value: value and rebirth.set())
    device = MqttSpbEntityDevice(group, node_id, device_id)
    device.data.set_value("temp", 20.0)
    device.data.set_value("count", 0)
    device.data.set_value("running", False)
    device.data.set_value("state", "idle")

    if not node.connect("127.0.0.1", int(port)) or not device.connect("127.0.0.1", int(port)):
        sys.exit("cannot connect")
    time.sleep(0.3)
    if data_first:
        device.data.set_value("temp", -1.5)
        device.publish_data()  # every value is new: all four metrics
        print(json.dumps({"temp": -1.5, "count": 0, "running": False, "state": "idle"}), flush=True)
        if not rebirth.wait(20):
            sys.exit("no rebirth request")
        print(json.dumps({"rebirth": True}), flush=True)
    node.publish_birth()
    time.sleep(0.2)  # node and device have a connection each: keep NBIRTH ahead of DBIRTH
    device.publish_birth()
    time.sleep(0.2)
    for i in range(count):
        values = {"temp": 20.0 + i * 0.25, "count": i * 1000, "running": i % 2 == 1, "state": f"s{i}"}
        for name, value in values.items():
            device.data.set_value(name, value)
        device.publish_data()
        print(json.dumps(values), flush=True)
        time.sleep(0.02)
    time.sleep(0.3)
    device.disconnect()
    node.disconnect()
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
