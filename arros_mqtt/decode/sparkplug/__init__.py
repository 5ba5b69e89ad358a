"""Sparkplug B (`format = "sparkplug"`): Arros as a Sparkplug host application.

`schema` (type names) is light; `decoder` (protobuf, host state) is imported only when a sparkplug
stream runs. The row columns of a sparkplug stream are `config.SPARKPLUG_SCHEMA`.
"""
