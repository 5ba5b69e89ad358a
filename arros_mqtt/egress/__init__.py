"""Where results go: MQTT messages (encoded per docs/results.md) through the output queue and the
QoS 2 output journal, Parquet archives, and dead letters."""
