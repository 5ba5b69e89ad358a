"""Arros MQTT: streaming SQL over MQTT telemetry, on Apache Arrow and DataFusion."""

__version__ = "0.1.0"

__all__ = ["__version__"]
