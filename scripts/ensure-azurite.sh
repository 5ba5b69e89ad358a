#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator the object-storage tests upload to) with npm into
# .azurite/ of the project when it is missing there; the tests find it at .azurite/node_modules/.bin/azurite-blob.
# Needs node and npm (apt-get installs them when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${AZURITE_DIR:-.azurite}"
version="3.37.0"
if [ -x "$dir/node_modules/.bin/azurite-blob" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing nodejs and npm with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
echo "installing azurite $version with npm into $dir" >&2
mkdir -p "$dir"
npm install --silent --no-audit --no-fund --prefix "$dir" "azurite@$version" >/dev/null
