#!/usr/bin/env bash
# Builds cosign (the comparison point of bench/sign_vs_cosign.py) from the Go module proxy into
# $OPK_SIGN_TOOLS/bin, once: a stamp next to the binary holds the version it was built from.
# Only `make bench` needs it, so it is not part of `make setup`.
set -euo pipefail
tools="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}"
bin="$tools/bin"
COSIGN="github.com/sigstore/cosign/v2/cmd/cosign@v2.6.1"
if [[ -x "$bin/cosign" && -f "$bin/cosign.version" && "$(cat "$bin/cosign.version")" == "$COSIGN" ]]; then
    exit 0
fi
echo "build-cosign: building cosign from $COSIGN (a few minutes, once)" >&2
mkdir -p "$bin"
GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false" GOBIN="$bin" go install "$COSIGN"
printf '%s\n' "$COSIGN" >"$bin/cosign.version"
