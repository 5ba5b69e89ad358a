"""The device simulator (`arros simulate`) and the demo (`arros demo`)."""
