#!/usr/bin/env bash
# Linters for the GitHub Action and the workflows (tests/integration/test_action_lint.py):
#   actionlint  built from the Go module proxy (the PyPI wrapper downloads a release binary from
#               GitHub at build time, which cannot be reached here)
#   ShellCheck  Debian's, so that actionlint also checks the shell in `run:` steps
#   zizmor      comes from PyPI through the `test` extra; run offline by the tests
# The binary goes to $OPK_SIGN_TOOLS/bin with a stamp holding the version it was built from, so a
# second run with everything in place is a no-op.
set -euo pipefail

tools="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}"
bin="$tools/bin"
# Pinned: the proxy here serves exact versions only. actionlint's own go.mod pins its dependencies.
ACTIONLINT="github.com/rhysd/actionlint/cmd/actionlint@v1.7.9"

if ! command -v shellcheck >/dev/null 2>&1; then
    echo "30-action-lint-tools: installing shellcheck" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        shellcheck >/dev/null
fi

if [[ -x "$bin/actionlint" && -f "$bin/actionlint.version" &&
    "$(cat "$bin/actionlint.version")" == "$ACTIONLINT" ]]; then
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "30-action-lint-tools: Go is not installed (need Go 1.24+ to build actionlint)" >&2
    exit 1
fi
echo "30-action-lint-tools: building actionlint from $ACTIONLINT" >&2
mkdir -p "$bin"
GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false" GOBIN="$bin" go install "$ACTIONLINT"
printf '%s\n' "$ACTIONLINT" >"$bin/actionlint.version"
