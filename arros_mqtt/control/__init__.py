"""Control topics (docs/control.md): run-time SQL subscriptions, catalogue, status, limits.

`plane` is the service side, `client` and `cli` the `arros sub` side (which imports neither the
engine nor DataFusion, so it starts fast).
"""
