#!/usr/bin/env bash
# containerd and ctr, for the image-verifier tests (tests/integration/test_containerd_verifier.py,
# docs/containerd.md): containerd 2.x runs every executable in its image-verifier bin dir on each
# transfer-service pull, which is where opk-sign-containerd-verifier plugs in. Built from the Go
# module proxy (about 5 minutes, once) without cgo and without the btrfs/devmapper/zfs snapshotters
# (the tests unpack with overlayfs or the native snapshotter, neither needs them; runc is not
# needed either: the tests pull and unpack, they run no container). The binaries go to
# $OPK_SIGN_TOOLS/bin, each with a stamp holding the version it was built from; a second run with
# everything in place is a no-op. Network use: the Go module proxy only.
set -euo pipefail

tools="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}"
bin="$tools/bin"
# Pinned: the proxy here serves exact versions only. containerd's own go.mod pins its dependencies.
CONTAINERD_VERSION="v2.4.2"
MODULE="github.com/containerd/containerd/v2"
TAGS="no_btrfs no_devmapper no_zfs"

log() { echo "60-containerd: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
    log "Go is not installed (need Go 1.24+ to build containerd)"
    exit 1
fi
mkdir -p "$bin"

for name in containerd ctr; do
    stamp="$MODULE/cmd/$name@$CONTAINERD_VERSION tags=$TAGS cgo=0"
    if [[ -x "$bin/$name" && -f "$bin/$name.version" && "$(cat "$bin/$name.version")" == "$stamp" ]]; then
        continue
    fi
    log "building $name from $MODULE/cmd/$name@$CONTAINERD_VERSION (minutes, once)"
    GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOBIN="$bin" \
        go install -tags "$TAGS" "$MODULE/cmd/$name@$CONTAINERD_VERSION"
    printf '%s\n' "$stamp" >"$bin/$name.version"
done
