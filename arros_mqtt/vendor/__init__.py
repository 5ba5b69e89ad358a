"""Protocol definitions taken from upstream projects, with the code protoc generated from them.

`sparkplug_b.proto` is Eclipse Tahu's; regenerate `sparkplug_b_pb2.py` with `make sparkplug-proto`.
"""
