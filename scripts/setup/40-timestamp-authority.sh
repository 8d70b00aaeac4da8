#!/usr/bin/env bash
# The RFC 3161 timestamp authority the tests and the demo timestamp against (docs/timestamps.md):
# sigstore's timestamp-authority (github.com/sigstore/timestamp-authority/v2, pinned in
# tests/tsa/go.mod) with its in-memory signer, built as tests/tsa (opk-tsa): the upstream REST API
# and signer without the upstream command's fixed :2112 metrics listener, so that several can run
# side by side on loopback. The binary goes to $OPK_SIGN_TOOLS/bin/opk-tsa with a sha256 stamp of
# its inputs; a second run with nothing changed is a no-op. Network use: the Go module proxy only.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$repo_root/tests/tsa"
tools="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}"
bin="$tools/bin/opk-tsa"
stamp="$bin.sha256"

log() { echo "40-timestamp-authority: $*" >&2; }

# libfaketime (Debian's faketime): the tests run the verifier with its clock 30 days ahead, to show
# that a timestamped signature outlives the PK token's 24 hours.
if ! command -v faketime >/dev/null 2>&1; then
    log "installing faketime"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        faketime >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed (need Go 1.25+ to build the timestamp authority)"
    exit 1
fi
export GOTOOLCHAIN=local

# Fingerprint of the inputs: each source file's hash and name, then the toolchain.
fingerprint="$(
    cd "$src"
    {
        find . -maxdepth 1 -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum
        go env GOVERSION GOOS GOARCH
    } | sha256sum | cut -d' ' -f1
)"

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$fingerprint" ]]; then
    exit 0
fi

log "building $bin from $(grep -m1 'sigstore/timestamp-authority' "$src/go.mod" | xargs) (a minute, once)"
mkdir -p "$tools/bin"
tmp="$(mktemp "$tools/bin/.opk-tsa.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
(cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -o "$tmp" .)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
printf '%s\n' "$fingerprint" >"$stamp"
