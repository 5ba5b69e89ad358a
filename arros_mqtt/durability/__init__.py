"""Nothing lost: the write-ahead log, checkpoints of the engine's state, the state_dir lock.

`service.round_driver` ties them to the stages on the engine thread; docs/durability.md states the
guarantees.
"""
