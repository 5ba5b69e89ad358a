"""The web console (docs/web.md): server-rendered pages of the running service, live over Server-Sent
Events, an SQL editor that goes through the control plane, and read-only queries over the archives."""

from arros_mqtt.web.server import WebConsole
from arros_mqtt.web.sources import WebSources

__all__ = ["WebConsole", "WebSources"]
