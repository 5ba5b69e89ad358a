"""Where messages come from: the MQTT source of client mode, the micro-batcher that both modes fill,
and the acknowledgement ledger (PUBACK once a message's rows are durable)."""
