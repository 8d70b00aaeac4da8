#!/usr/bin/env bash
# Container image builds (tests/integration/test_action_image.py, the release rehearsal):
#   buildah     builds the Dockerfile with no daemon (chroot isolation, vfs storage)
#   mmdebstrap  makes the Debian base image the tests build from (the pinned base cannot be
#               pulled here)
# Then makes that base ahead of time (tests/services/container_build.py: a cached mmdebstrap
# tarball and a base image in buildah's storage under ~/.cache/opk-sign), so that `make test`
# finds it warm. Idempotent: packages are installed when missing, the base is made when its
# recipe changed. Network use: apt (Debian's packages) only.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
# The Debian archive's keys, for mmdebstrap on a host that is not Debian (Ubuntu runners).
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
if ((${#missing[@]})); then
    echo "50-container-build: installing ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

python="${VENV:-.venv}/bin/python"
[[ -x "$python" ]] || python=python3
"$python" -m tests.services.container_build >&2
