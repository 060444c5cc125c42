#!/usr/bin/env bash
# Set up and run releasebot on embedded defaults: SQLite, the example config, and the local
# Slack sandbox (no Slack workspace needed).
#
#   bash run.sh            the demo: the bot plus a release story you click through
#   bash run.sh --auto     the demo, making the story's clicks too
#   bash run.sh serve      just the bot (`releasebot serve`) on the example config
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/releasebot ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e .
fi
PORT="${PORT:-8000}"
if [ "${1:-}" = "serve" ]; then
  export RELEASEBOT_CONFIG="${RELEASEBOT_CONFIG:-examples/releasebot.yaml}"
  export RELEASEBOT_DATABASE_URL="${RELEASEBOT_DATABASE_URL:-sqlite:///./releasebot.db}"
  export RELEASEBOT_PUBLIC_URL="${RELEASEBOT_PUBLIC_URL:-http://127.0.0.1:$PORT}"
  echo "releasebot: open http://127.0.0.1:$PORT/ (dashboard) and /sandbox (Slack sandbox)"
  exec .venv/bin/releasebot serve --host 127.0.0.1 --port "$PORT"
fi
exec .venv/bin/releasebot demo --port "$PORT" "$@"
