#!/usr/bin/env bash
# A virtual environment of its own for mqtt-spb-wrapper, the independent Sparkplug B edge node the
# tests drive: it pins paho-mqtt 1.6.1 and protobuf 3.20.3, which cannot live beside Arros's own.
set -euo pipefail
venv="${1:-.venv-spb}"
python="${PYTHON:-python3}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import mqtt_spb_wrapper" 2>/dev/null; then
  exit 0
fi
echo "creating $venv with mqtt-spb-wrapper" >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet 'mqtt-spb-wrapper==2.1.2'
