#!/usr/bin/env bash
# What one registry read costs in CPU, layer by layer (bench/RESULTS.md, issue 13).
# HTTP_REQUESTS (default 500) requests per layer per round, HTTP_ROUNDS (default 5). About 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
# Byte-compiled first: an environment with PYTHONDONTWRITEBYTECODE would otherwise compile
# opk-sign's sources in every process timed, as an installed wheel never does.
.venv/bin/python -m compileall -q src
echo "## One registry read, layer by layer"
echo
PYTHONPATH="$PWD" .venv/bin/python -m bench.http_floor --requests "${HTTP_REQUESTS:-500}" \
    --rounds "${HTTP_ROUNDS:-5}"
