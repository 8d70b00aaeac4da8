#!/usr/bin/env bash
# BuildKit (buildkitd + buildctl) and runc, for the tests that build images the way Docker Official
# Images are built: BuildKit attestation manifests inside the index (docs/official-images.md).
#   buildkitd, buildctl  github.com/moby/buildkit, built from the Go module proxy
#   runc                 Debian's runc (buildkitd's OCI worker runs RUN steps with it; a
#                        `FROM scratch` + COPY build needs no container, but the worker wants it)
# Binaries go to $OPK_SIGN_TOOLS/bin with a stamp holding the version they were built from; a second
# run with everything in place is a no-op. Network use: apt and the Go module proxy only.
set -euo pipefail

tools="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}"
bin="$tools/bin"

# Pinned: the proxy here serves exact versions only. v0.32.0 declares go 1.26.3.
BUILDKIT_VERSION="v0.32.0"
BUILDKIT="github.com/moby/buildkit"

log() { echo "50-buildkit: $*" >&2; }

# --- Debian packages -----------------------------------------------------------------------------
if ! command -v runc >/dev/null 2>&1; then
    log "installing runc"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        runc >/dev/null
fi

# --- Go tools ------------------------------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed (need Go 1.26.3+ to build BuildKit $BUILDKIT_VERSION)"
    exit 1
fi
export GOTOOLCHAIN=local GOFLAGS=-trimpath
mkdir -p "$bin"

# `go install module/cmd/x@version` refuses a module whose go.mod has exclude directives (BuildKit's
# has), so both commands are built inside a copy of the module, its go.mod the main module's.
stamp="$BUILDKIT@$BUILDKIT_VERSION $(go env GOVERSION)"
up_to_date() {
    [[ -x "$bin/$1" && -f "$bin/$1.version" && "$(cat "$bin/$1.version")" == "$stamp" ]]
}
if ! up_to_date buildkitd || ! up_to_date buildctl; then
    log "building buildkitd and buildctl from $BUILDKIT@$BUILDKIT_VERSION (a few minutes, once)"
    src="$(GOFLAGS= go mod download -json "$BUILDKIT@$BUILDKIT_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$src" && -f "$src/go.mod" ]] || { log "could not download $BUILDKIT@$BUILDKIT_VERSION"; exit 1; }
    scratch="$(mktemp -d)"
    trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT
    cp -r "$src/." "$scratch/"
    chmod -R u+w "$scratch"
    (
        cd "$scratch"
        for name in buildkitd buildctl; do
            GOFLAGS="-mod=mod -trimpath -buildvcs=false" go build -o "$bin/.$name.tmp" "./cmd/$name"
            mv -f "$bin/.$name.tmp" "$bin/$name"
            printf '%s\n' "$stamp" >"$bin/$name.version"
        done
    )
fi
