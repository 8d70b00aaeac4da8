#!/usr/bin/env bash
# opk-sign sign against cosign sign --key on the same loopback registries (bench/RESULTS.md).
# Extra arguments go to bench/sign_vs_cosign.py, e.g. --baseline-src DIR for before/after rows.
set -euo pipefail
cd "$(dirname "$0")/.."
# Byte-compiled first: an environment with PYTHONDONTWRITEBYTECODE would otherwise compile
# opk-sign's sources in every process timed, as an installed wheel never does.
.venv/bin/python -m compileall -q src
bash bench/build-cosign.sh
echo "## Signing: opk-sign against cosign"
echo
PYTHONPATH="$PWD" .venv/bin/python -m bench.sign_vs_cosign --runs "${SIGN_RUNS:-5}" "$@"
