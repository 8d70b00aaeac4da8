#!/usr/bin/env bash
# The registries and clients the OCI tests run against (docs/registry.md, "Test services"):
#   docker-registry  Debian's CNCF distribution 2.8 (no referrers API: the tag-schema fallback)
#   htpasswd         bcrypt password files for distribution's basic auth and the token server
#   olareg           a registry with the OCI 1.1 referrers API (by regclient's maintainer)
#   token-server     distribution's reference token server (contrib/token-server), for bearer auth
#   crane, oras      independent clients that check what we wrote
# Go tools go to $OPK_SIGN_TOOLS/bin, each with a stamp holding the version it was built from;
# a second run with everything in place is a no-op. Idempotent; network use: apt and the Go
# module proxy only.
set -euo pipefail

tools="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}"
bin="$tools/bin"

# Pinned versions. The proxy here serves exact versions only (no @latest), so every module a
# build needs is named with its version.
OLAREG="github.com/olareg/olareg@v0.1.2"
OLAREG_DEPS=(
    "github.com/spf13/cobra@v1.8.1"
    "github.com/spf13/pflag@v1.0.6"
    "github.com/inconshreveable/mousetrap@v1.1.0"
    "github.com/opencontainers/go-digest@v1.0.0"
)
TOKEN_SERVER="github.com/docker/distribution@v2.8.3+incompatible"
TOKEN_SERVER_DEPS=(
    "github.com/docker/libtrust@v0.0.0-20160708172513-aabc10ec26b7"
    "github.com/gorilla/mux@v1.8.1"
    "github.com/sirupsen/logrus@v1.10.2"
    "golang.org/x/crypto@v0.59.0"
    "golang.org/x/sys@v0.50.0"
)
CRANE="github.com/google/go-containerregistry/cmd/crane@v0.22.1"
ORAS="oras.land/oras/cmd/oras@v1.3.6"

log() { echo "10-registries: $*" >&2; }

# --- Debian packages -----------------------------------------------------------------------------
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# --- Go tools ------------------------------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed (need Go 1.25+ to build the test registries)"
    exit 1
fi
export GOTOOLCHAIN=local GOFLAGS=-trimpath
mkdir -p "$bin"

# up_to_date NAME STAMP: the binary exists and was built from exactly STAMP.
up_to_date() {
    [[ -x "$bin/$1" && -f "$bin/$1.version" && "$(cat "$bin/$1.version")" == "$2" ]]
}

mark_built() { printf '%s\n' "$2" >"$bin/$1.version"; }

# go_install NAME MODULE@VERSION: for modules whose own go.mod pins their dependencies.
go_install() {
    local name="$1" target="$2"
    up_to_date "$name" "$target" && return 0
    log "building $name from $target"
    GOBIN="$bin" go install "$target"
    mark_built "$name" "$target"
}

# go_install_pinned NAME PACKAGE MODULE@VERSION DEP@VERSION...: builds PACKAGE inside a scratch
# module that requires exactly the versions given (for modules without a go.mod of their own, and
# because `go install mod@version` asks the proxy for the version list, which it refuses here).
go_install_pinned() {
    local name="$1" package="$2"
    shift 2
    local stamp="$*"
    up_to_date "$name" "$stamp" && return 0
    log "building $name from $1"
    local scratch
    scratch="$(mktemp -d)"
    (
        cd "$scratch"
        go mod init opk-sign.test/tools >/dev/null 2>&1
        go get "$@" >/dev/null 2>&1 || go get "$@"
        GOBIN="$bin" go install "$package"
    )
    rm -rf "$scratch"
    mark_built "$name" "$stamp"
}

go_install_pinned olareg github.com/olareg/olareg/cmd/olareg \
    "$OLAREG" "${OLAREG_DEPS[@]}"
go_install_pinned token-server github.com/docker/distribution/contrib/token-server \
    "$TOKEN_SERVER" "${TOKEN_SERVER_DEPS[@]}"
go_install crane "$CRANE"
go_install oras "$ORAS"
