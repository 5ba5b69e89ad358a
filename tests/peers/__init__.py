"""Real peers the tests run as separate processes: PLC servers and an independent Sparkplug edge node."""
