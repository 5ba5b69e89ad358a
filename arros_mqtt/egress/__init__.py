"""Where results go: MQTT messages (encoded per SPEC section 7) and dead letters."""
