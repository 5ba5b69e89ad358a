"""A QoS 2 result sender (`MqttSink` with its output journal) that stops at chosen points of the QoS 2
flow and then waits to be killed with SIGKILL: the "crash" of tests/faults/test_exactly_once_faults.py.

Records 1..10 go the whole way (PUBCOMP); 11..20 are released in the journal but their PUBRELs never
leave; 21..30 get their PUBREC unanswered (the release thread is stopped); 31..40 are queued, never
journaled (the client counts as disconnected). Prints "ready" when all of that happened.

    python -m tests.peers.qos2_sender --url mqtt://127.0.0.1:1883 --client-id X --dir STATE --prefix P
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from arros_mqtt.config import BrokerConfig
from arros_mqtt.core.log_position import LogPosition
from arros_mqtt.egress.mqtt_sink import MqttSink


def outputs(prefix: str, first: int, last: int) -> list[tuple[int, str, bytes]]:
    """(seq, topic, payload) of outputs first..last; record 5 has two equal outputs (a multiset)."""
    out = [(i, f"{prefix}/w/{i % 3}", orjson.dumps({"i": i})) for i in range(first, last + 1)]
    return out + [o for o in out if o[0] == 5]


def put(sink: MqttSink, position: LogPosition, messages: list[tuple[int, str, bytes]]) -> None:
    for seq, topic, payload in messages:
        position.seq = seq
        sink.publish(topic, payload, qos=2)
    sink.outputs.pump()  # what the engine does at the end of its round


def wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the broker did not answer in time")
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args()
    from pathlib import Path

    position = LogPosition()
    sink = MqttSink(BrokerConfig(url=args.url, client_id=args.client_id), position=position,
                    journal_dir=Path(args.dir) / "outbox")
    sink.outputs.recover()
    sink.start(wait=10)
    put(sink, position, outputs(args.prefix, 1, 10))
    wait(lambda: sink.outputs.acknowledged == 11)
    sink.client.release = lambda mids: None
    put(sink, position, outputs(args.prefix, 11, 20))
    wait(lambda: sum(e.released for e in sink.journal.pending.values()) == 10)
    sink.releaser.stop()
    put(sink, position, outputs(args.prefix, 21, 30))
    time.sleep(0.5)  # their PUBRECs arrive, unanswered
    sink.client.is_connected = lambda: False
    put(sink, position, outputs(args.prefix, 31, 40))
    print("ready", flush=True)
    time.sleep(600)
    return 1


if __name__ == "__main__":
    sys.exit(main())
