"""What the service needs of a transport, whichever mode: client mode (paho, `service.client_transport`)
or the embedded broker (`transport.embedded_broker`)."""

from __future__ import annotations

import threading
from typing import Protocol

from arros_mqtt.transport.stream_router import Sink


class Transport(Protocol):
    """Where raw messages come from and where published messages go."""

    subscribed: threading.Event  # set once the transport receives the streams' topics
    description: str

    def start(self, deliver: Sink, connect_wait: float) -> None: ...
    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None: ...
    def stop_receiving(self) -> None: ...
    def flush(self, timeout: float) -> bool: ...
    def close(self) -> None: ...
