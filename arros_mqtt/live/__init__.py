"""Live views: what the service holds in memory for readers outside the engine thread (Flight SQL's
`live` and `system` schemas, the web console): recent rows per stream, latest results per subscription,
recent dead letters, and the catalogue as tables."""

from arros_mqtt.live.views import LiveSources, LiveViews

__all__ = ["LiveSources", "LiveViews"]
