"""Nothing lost: the write-ahead log, acknowledgements after durability, checkpoints, the output queue.

`journal.Journal` ties them together on the engine thread; README "Durability" states the guarantees.
"""
