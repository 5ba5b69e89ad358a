"""`python -m arros_mqtt` is the `arros` command."""

from arros_mqtt.cli import main

raise SystemExit(main())
