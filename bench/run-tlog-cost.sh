#!/usr/bin/env bash
# What logging in Rekor v2 adds per signing run (bench/RESULTS.md, docs/transparency.md).
# TLOG_RUNS (default 5) runs per row. About 30 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
# Byte-compiled first: an environment with PYTHONDONTWRITEBYTECODE would otherwise compile
# opk-sign's sources in every process timed, as an installed wheel never does.
.venv/bin/python -m compileall -q src
echo "## Transparency log: the cost per signature"
echo
PYTHONPATH="$PWD" .venv/bin/python -m bench.tlog_cost --runs "${TLOG_RUNS:-5}"
