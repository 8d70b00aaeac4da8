#!/usr/bin/env bash
# opk-sign verify against cosign verify --key on the same loopback registries (bench/RESULTS.md).
# VERIFY_IMAGES (default 1000) images per registry; VERIFY_COSIGN_LOOP (default 0: all of them)
# images verified by the one-cosign-process-per-image loop. About 12 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# Byte-compiled first: an environment with PYTHONDONTWRITEBYTECODE would otherwise compile
# opk-sign's sources in every process timed, as an installed wheel never does.
.venv/bin/python -m compileall -q src
bash bench/build-cosign.sh
echo "## Verification: opk-sign against cosign"
echo
PYTHONPATH="$PWD" .venv/bin/python -m bench.verify_vs_cosign --runs "${VERIFY_RUNS:-10}" \
    --images "${VERIFY_IMAGES:-1000}" --cosign-loop "${VERIFY_COSIGN_LOOP:-0}"
echo
echo "## Start-up and one-shot: opk-sign against cosign"
echo
PYTHONPATH="$PWD" .venv/bin/python -m bench.startup_vs_cosign --runs "${STARTUP_RUNS:-20}"
