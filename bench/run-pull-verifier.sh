#!/usr/bin/env bash
# The containerd verifier's wall time per pull (cold and warm cache, p50/p99) against containerd's
# 10 s budget, and `opk-sign serve`'s throughput for a 100-image request (bench/RESULTS.md).
# PULL_PULLS (default 50) pulls each way; PULL_IMAGES (default 100) images in the request.
# About 2 minutes on 2 cores (most of it signing the images).
set -euo pipefail
cd "$(dirname "$0")/.."
# Byte-compiled first: an environment with PYTHONDONTWRITEBYTECODE would otherwise compile
# opk-sign's sources in every process timed, as an installed wheel never does.
.venv/bin/python -m compileall -q src
PYTHONPATH="$PWD" .venv/bin/python -m bench.pull_verifier --pulls "${PULL_PULLS:-50}" \
    --images "${PULL_IMAGES:-100}"
