"""What every stage shares and nothing else: errors, durations, Arrow type names, topic patterns,
connector kinds by name, and the write-ahead log position that outputs are tagged with.

The bottom layer (docs/architecture.md): it imports nothing else of Arros.
"""
