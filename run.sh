#!/usr/bin/env bash
# Set up and run releasebot on embedded defaults: SQLite, the example config, and (with no
# SLACK_BOT_TOKEN) Slack messages written to the log.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/releasebot ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e .
fi
export RELEASEBOT_CONFIG="${RELEASEBOT_CONFIG:-examples/releasebot.yaml}"
export RELEASEBOT_DATABASE_URL="${RELEASEBOT_DATABASE_URL:-sqlite:///./releasebot.db}"
echo "releasebot: open http://127.0.0.1:${PORT:-8000}/readyz (config $RELEASEBOT_CONFIG)"
exec .venv/bin/releasebot serve --host 127.0.0.1 --port "${PORT:-8000}"
