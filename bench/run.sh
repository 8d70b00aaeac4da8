#!/usr/bin/env bash
# Runs every benchmark in one go and prints Markdown for bench/RESULTS.md.
# Usage: make bench   (after `make setup`; tools come from $OPK_SIGN_TOOLS/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}/bin:$PATH"
echo "## GQ256 against the Go reference"
echo
.venv/bin/python -m bench.gq_vs_go --iterations "${GQ_ITERATIONS:-200}"
for extra in bench/run-*.sh; do
    [ -e "$extra" ] || continue
    echo
    bash "$extra"
done
