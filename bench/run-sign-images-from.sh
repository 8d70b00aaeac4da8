#!/usr/bin/env bash
# One `opk-sign sign --images-from` against one `opk-sign sign` process per image (bench/RESULTS.md,
# "Signing many images"). IMAGES sets the batch size (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."
# Byte-compiled first: an environment with PYTHONDONTWRITEBYTECODE would otherwise compile
# opk-sign's sources in every process timed, as an installed wheel never does.
.venv/bin/python -m compileall -q src
echo "## Signing many images: sign --images-from against one process per image"
echo
PYTHONPATH="$PWD" .venv/bin/python -m bench.sign_images_from --images "${IMAGES:-50}"
