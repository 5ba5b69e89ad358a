"""The broker connections: paho clients for client mode, the embedded amqtt broker with our plugin,
the bulk read/write paths over paho's socket, and the topic -> stream router both modes share.

A transport moves bytes; it does not decode, query or persist (docs/architecture.md).
"""
