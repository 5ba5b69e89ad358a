"""Where messages come from: an MQTT broker in client mode (and, later, the embedded broker)."""
