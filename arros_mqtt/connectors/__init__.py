"""PLC connectors: read values from PLCs and feed a stream with no broker hop (docs/plc.md).

Each kind is a `arros_mqtt.connectors.base.Connector` subclass registered by name in the `arros.connectors`
entry-point group, so a third-party package adds a kind by declaring
`[project.entry-points."arros.connectors"] mykind = "mypkg.module:MyConnector"`.
Built in: `modbus` (Modbus TCP, pymodbus) and `opcua` (OPC UA, asyncua).
"""
