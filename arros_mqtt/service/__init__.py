"""The composition root: `Service` wires transport -> ingress -> decode -> engine -> egress, the
round driver runs one round of micro-batches through the write-ahead log and the stages, and
`client_transport` composes client mode's source and sink (docs/architecture.md).
"""
