#!/usr/bin/env bash
# Builds tests/interop (the OpenPubkey Go reference implementation harness) to
# $OPK_SIGN_TOOLS/bin/opk-interop. Idempotent: rebuilds only when go.mod, go.sum,
# a *.go file or the Go version changed (a sha256 stamp sits next to the binary).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$repo_root/tests/interop"
tools="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}"
bin="$tools/bin/opk-interop"
stamp="$bin.sha256"

if ! command -v go >/dev/null 2>&1; then
    echo "20-interop-harness: Go is not installed (need Go 1.25+ for tests/interop)" >&2
    exit 1
fi

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

echo "20-interop-harness: building $bin" >&2
mkdir -p "$tools/bin"
tmp="$(mktemp "$tools/bin/.opk-interop.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
(cd "$src" && GOFLAGS=-mod=readonly go build -trimpath -o "$tmp" .)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
printf '%s\n' "$fingerprint" >"$stamp"
