#!/usr/bin/env bash
# `make demo`: the main job end to end on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python scripts/demo_core.py
