#!/usr/bin/env bash
# The transparency log and witness the tests run against (docs/transparency.md):
#   rekor-server-posix  Sigstore's Rekor v2 (sigstore/rekor-tiles), the POSIX-storage server: the
#                       write API POST /api/v2/log/entries and C2SP tlog-tiles files on disk
#   omniwitness         transparency-dev's witness (C2SP tlog-witness), cosigning checkpoints
#   witness-keys        its cmd/generate_keys (note signer/verifier keys for the witness)
# Each binary goes to $OPK_SIGN_TOOLS/bin with a stamp holding the version it was built from; a
# second run with everything in place is a no-op. rekor-tiles v2.4.x needs Go 1.27 and a Fulcio
# version the proxy refuses, so v2.3.0. The witness has no tagged release: the pseudo-version is
# the proxy's @latest on 2026-12-03. Network use: the Go module proxy only.
set -euo pipefail

tools="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}"
bin="$tools/bin"

REKOR="github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix@v2.3.0"
WITNESS_VERSION="v0.0.0-20260720115447-2e1c6971d19e"
OMNIWITNESS="github.com/transparency-dev/witness/cmd/omniwitness@$WITNESS_VERSION"
GENERATE_KEYS="github.com/transparency-dev/witness/cmd/generate_keys@$WITNESS_VERSION"

log() { echo "50-rekor: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed (need Go 1.25+ to build Rekor v2 and the witness)"
    exit 1
fi
export GOTOOLCHAIN=local GOFLAGS=-trimpath
mkdir -p "$bin"

up_to_date() {
    [[ -x "$bin/$1" && -f "$bin/$1.version" && "$(cat "$bin/$1.version")" == "$2" ]]
}

# go_install NAME MODULE/PATH@VERSION: installs under NAME (go install names a binary after its
# directory: "posix" and "generate_keys" say too little on a PATH).
go_install() {
    local name="$1" target="$2"
    up_to_date "$name" "$target" && return 0
    log "building $name from $target (a few minutes, once)"
    local scratch
    scratch="$(mktemp -d)"
    GOBIN="$scratch" go install "$target"
    mv -f "$scratch/$(basename "${target%@*}")" "$bin/$name"
    rm -rf "$scratch"
    printf '%s\n' "$target" >"$bin/$name.version"
}

go_install rekor-server-posix "$REKOR"
go_install omniwitness "$OMNIWITNESS"
go_install witness-keys "$GENERATE_KEYS"
