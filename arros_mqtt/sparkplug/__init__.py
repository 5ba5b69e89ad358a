"""Sparkplug B (`format = "sparkplug"`): Arros as a Sparkplug host application.

`schema` (the row columns) is light and imported by the config; `decoder` (protobuf, host state)
is imported only when a sparkplug stream runs.
"""
