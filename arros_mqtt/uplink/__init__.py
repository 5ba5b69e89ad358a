"""Uplinks: local topics forwarded to a cloud broker through an on-disk buffer (docs/uplinks.md)."""

from arros_mqtt.uplink.forwarder import Uplink

__all__ = ["Uplink"]
