#!/usr/bin/env bash
# `make demo`: the main job end to end on loopback, as GitHub Actions would run it.
#
#   1. a registry (Debian's docker-registry, CNCF distribution), an RFC 3161 timestamp authority
#      (sigstore's timestamp-authority, tests/tsa) and the GitHub OIDC emulator start on 127.0.0.1;
#   2. a small two-platform image is pushed;
#   3. entrypoint.py (the container action) runs exactly as a runner runs it: INPUT_* variables,
#      the GITHUB_* context, the token-request variables, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY;
#   4. its outputs and step summary are shown, then `opk-sign inspect` shows the referrers;
#   5. `opk-sign verify` proves who signed it and checks the SLSA provenance attestation (and
#      refuses a policy naming someone else);
#   6. everything is stopped and removed (also on failure or Ctrl-C), unless --keep.
#
# Usage: scripts/demo.sh [--keep]      (make demo DEMO_ARGS=--keep)
#        scripts/demo.sh --stop [DIR]
# --keep leaves the services running and writes DIR/demo.env (mode 0600: it holds the emulator's
# request token); `. DIR/demo.env` to rerun the commands shown, `--stop DIR` to end it all.
# Color only on a terminal, and never with NO_COLOR set (https://no-color.org).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
py="$repo/.venv/bin/python"

usage() {
    echo "usage: scripts/demo.sh [--keep] | --stop [DIR]  (DIR: the one --keep printed;" \
        "default \$OPK_SIGN_DEMO_DIR from its env file)" >&2
    exit 2
}

# A kept service is stopped only if its PID still runs the command recorded at start: a PID
# reused by an unrelated process since then is left alone.
ours() { [[ "$(ps -ww -o args= -p "$1" 2>/dev/null)" == "$2" ]]; }

stop_kept() { # DIR
    local dir="$1" pid args left
    if [[ -z "$dir" || "$(basename "$dir")" != opk-sign-demo.* || ! -f "$dir/pids" ]]; then
        echo "demo: no kept demo in '$dir' (give the directory scripts/demo.sh --keep printed)" >&2
        exit 2
    fi
    while IFS=$'\t' read -r pid args; do
        ! ours "$pid" "$args" || kill "$pid" 2>/dev/null || true
    done <"$dir/pids"
    for _ in $(seq 1 50); do
        left=0
        while IFS=$'\t' read -r pid args; do
            ! ours "$pid" "$args" || left=1
        done <"$dir/pids"
        ((left)) || break
        sleep 0.1
    done
    while IFS=$'\t' read -r pid args; do
        ! ours "$pid" "$args" || kill -KILL "$pid" 2>/dev/null || true
    done <"$dir/pids"
    rm -rf "$dir"
    echo "demo: stopped the registry, the timestamp authority and the OIDC emulator; removed $dir"
}

keep=0
case "$#:${1-}" in
0:) ;;
1:--keep) keep=1 ;;
[12]:--stop)
    stop_kept "${2:-${OPK_SIGN_DEMO_DIR:-}}"
    exit 0
    ;;
*) usage ;;
esac

export PATH="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}/bin:$PATH"

work="$(mktemp -d "${TMPDIR:-/tmp}/opk-sign-demo.XXXXXX")"
env_file="$work/demo.env"
pids=()
cleanup() {
    local status=$? pid
    # Kept only after a successful run: a failed demo leaves nothing behind.
    if ((keep && status == 0)); then
        return
    fi
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Records a started service for --stop once it answers (by then it runs its own command line).
started_service() { # PID
    printf '%s\t%s\n' "$1" "$(ps -ww -o args= -p "$1")" >>"$work/pids"
}

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    bold=$'\033[1m' dim=$'\033[2m' plain=$'\033[0m'
else
    bold='' dim='' plain=''
fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# Shows a command as a user would type it (after `. demo.env`), then runs it in that environment.
run() {
    local shown="\$" arg
    for arg; do shown+=" $(printf '%q' "$arg")"; done
    printf '%s%s%s\n' "$dim" "$shown" "$plain"
    (
        # shellcheck source=/dev/null
        . "$env_file"
        "$@"
    )
}
started=$SECONDS

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() { # URL WHAT
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "demo: $2 did not start" >&2
    return 1
}

step "1. Start a registry, a timestamp authority and the GitHub OIDC emulator on loopback"
port="$(free_port)"
registry="127.0.0.1:$port"
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry/store}, delete: {enabled: true}}
http: {addr: $registry, secret: opk-sign-demo}
YAML
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
pids+=("$!")
wait_for "http://$registry/v2/" "the registry"
started_service "${pids[-1]}"
echo "registry: http://$registry (CNCF distribution: no referrers API, so the tag fallback)"

tsa="127.0.0.1:$(free_port)"
opk-tsa --host 127.0.0.1 --port "${tsa#*:}" >"$work/tsa.log" 2>&1 &
pids+=("$!")
wait_for "http://$tsa/ping" "the timestamp authority"
started_service "${pids[-1]}"
timestamp_url="http://$tsa/api/v1/timestamp"
# The TSA's certificate chain: verify checks the bundles' timestamps against it.
"$py" -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' \
    "http://$tsa/api/v1/timestamp/certchain" >"$work/tsa.pem"
echo "timestamp authority: $timestamp_url (sigstore timestamp-authority, ephemeral in-memory key)"
echo "  its certificate chain, which verify trusts: $work/tsa.pem"

# The job: octo-org/hello-opk, tag v1, signing through the reusable workflow, whose
# job_workflow_ref is what verifiers pin.
cat >"$work/claims.json" <<'JSON'
{"repository": "octo-org/hello-opk", "ref": "refs/tags/v1", "event_name": "push",
 "workflow_file": ".github/workflows/release.yml",
 "job_workflow_ref": "opk-sign/opk-sign/.github/workflows/sign.yml@refs/tags/v1"}
JSON
"$repo/.venv/bin/opk-sign" dev github-oidc --claims "$work/claims.json" --env-file "$work/job.env" \
    >"$work/emulator.out" 2>"$work/emulator.err" &
pids+=("$!")
for _ in $(seq 1 100); do [[ -s "$work/job.env" ]] && break; sleep 0.1; done
issuer="$(sed -n 's/^# issuer: //p' "$work/emulator.out")"
[[ -n "$issuer" ]] || { cat "$work/emulator.err" >&2; exit 1; }
started_service "${pids[-1]}"
echo "OIDC issuer (emulated GitHub): $issuer"

image="$registry/octo-org/hello-opk:v1"
# Everything the commands shown below need, for `. demo.env` (and for run, which uses it too, so
# the file is proved by the demo itself): the job's variables from the emulator (its request
# token, hence mode 0600, and OPK_SIGN_OIDC_ISSUER), the local TSA, no transparency log (the
# emulated repository is public: signing would log in Sigstore's public Rekor, unreachable here
# and no place for a demo; docs/transparency.md), and no docker config (the loopback registry is
# anonymous).
(
    umask 077
    {
        echo "# opk-sign demo ($work): \`. $env_file\`, then rerun the commands it showed."
        echo "# Stop its services with: scripts/demo.sh --stop (or --stop $work)"
        # shellcheck disable=SC2016 # $PATH is the user's, expanded when sourced
        printf 'export PATH=%q:"$PATH"\n' "$repo/.venv/bin"
        printf 'export %s=%q\n' \
            OPK_SIGN_DEMO_DIR "$work" \
            OPK_SIGN_DEMO_REGISTRY "$registry" \
            OPK_SIGN_DEMO_IMAGE "$image" \
            OPK_SIGN_DEMO_TSA_CERTS "$work/tsa.pem" \
            OPK_SIGN_TIMESTAMP_URL "$timestamp_url" \
            OPK_SIGN_TLOG never \
            DOCKER_CONFIG "$work/no-docker-config"
        cat "$work/job.env"
    } >"$env_file"
)

step "2. Push a two-platform sample image"
run opk-sign dev push-sample "$image" --platform linux/amd64 --platform linux/arm64

step "3. Run entrypoint.py as a runner runs the container action"
: >"$work/github_output"
: >"$work/step_summary"
mkdir -p "$work/workspace" "$work/github_home"
# A fresh environment, as the runner gives a container action: the job's context variables and
# token-request variables (from the emulator's env file), the inputs as INPUT_* (names keep their
# hyphens, as the runner writes them), and the file-command paths. Nothing else leaks in.
action_log="$work/action.log"
status=0
"$py" - "$work/job.env" "$repo/entrypoint.py" >"$action_log" 2>&1 <<PY || status=$?
import os, shlex, sys
env = {
    "PATH": os.environ["PATH"], "HOME": "$work/github_home", "LANG": "C.UTF-8",
    "GITHUB_OUTPUT": "$work/github_output", "GITHUB_STEP_SUMMARY": "$work/step_summary",
    "GITHUB_WORKSPACE": "$work/workspace", "RUNNER_TEMP": "$work",
    "OPK_SIGN_OIDC_ISSUER": "$issuer",
    "INPUT_IMAGE": "$image", "INPUT_RECURSIVE": "true", "INPUT_PROVENANCE": "true",
    "INPUT_PREDICATE": "", "INPUT_PREDICATE-TYPE": "",
    "INPUT_REGISTRY-USERNAME": "", "INPUT_REGISTRY-PASSWORD": "", "INPUT_GITHUB-TOKEN": "",
    "INPUT_TIMESTAMP-URL": "$timestamp_url",
    "INPUT_TLOG": "never",
}
for line in open(sys.argv[1], encoding="utf-8"):
    name, _, value = line.removeprefix("export ").strip().partition("=")
    env[name] = shlex.split(value)[0] if value else ""
os.execve(sys.executable, [sys.executable, sys.argv[2]], env)
PY
if ((status != 0)); then
    grep -v '^::add-mask::' "$action_log" >&2
    echo "demo: the action failed with exit code $status" >&2
    exit "$status"
fi
# The runner swallows ::add-mask:: commands (they carry the secrets to hide); so does the demo.
grep -v '^::add-mask::' "$action_log"

step "4. The action's outputs (\$GITHUB_OUTPUT)"
"$py" - "$work/github_output" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
i = 0
while i < len(lines):
    name, delimiter = lines[i].split("<<", 1)
    end = lines.index(delimiter, i + 1)
    print(f"{name} = {chr(10).join(lines[i + 1:end])}")
    i = end + 1
PY

step "   The step summary (\$GITHUB_STEP_SUMMARY, Markdown)"
cat "$work/step_summary"

step "5. opk-sign inspect: the image and its referrers, read back from the registry"
run opk-sign inspect "$image"

provenance=https://slsa.dev/provenance/v1
step "6. opk-sign verify: who signed it, and its SLSA provenance, proved from the registry alone"
echo "The policy: signed by octo-org/hello-opk through the reusable workflow sign.yml@v1."
echo "--attestation $provenance: each platform manifest must also carry a valid SLSA"
echo "provenance attestation (the one the action attached) from a signer the policy accepts."
verify=(opk-sign verify "$image" --issuer "$issuer" --tsa-certs "$work/tsa.pem" --no-trust-repo)
run "${verify[@]}" \
    --repository octo-org/hello-opk \
    --signer-workflow 'opk-sign/opk-sign/.github/workflows/sign.yml@refs/tags/v1' \
    --attestation "$provenance"
echo "Signature and SLSA provenance attestation verified on the index and both platforms."

step "   The same image against a policy naming another repository (exit 11 expected)"
status=0
run "${verify[@]}" --repository octo-org/other || status=$?
echo "exit code: $status"
((status == 11)) || { echo "demo: expected exit code 11" >&2; exit 1; }

if ((keep)); then
    step "Done in $((SECONDS - started)) s; the registry, the TSA and the emulator keep running"
    echo "Environment for the commands above (mode 0600, it holds the emulator's token):"
    echo "  $env_file"
    echo "Stop the services and remove $work with:"
    echo "  scripts/demo.sh --stop $work"
    first=". $env_file"
else
    step "Done in $((SECONDS - started)) s; stopping the registry, the TSA and the emulator"
    echo "To keep them running: make demo DEMO_ARGS=--keep (or scripts/demo.sh --keep)."
    first="scripts/demo.sh --keep   # then . the env file it prints"
fi
# \$NAME: the env file's variables, expanded when the user runs the commands.
cat <<EOF

Next, try:
  \$ $first
  \$ opk-sign verify "\$OPK_SIGN_DEMO_IMAGE" --repository octo-org/hello-opk --attestation $provenance --tsa-certs "\$OPK_SIGN_DEMO_TSA_CERTS" --no-trust-repo -o json
  \$ opk-sign inspect "\$OPK_SIGN_DEMO_IMAGE" -o json
  \$ opk-sign verify "\$OPK_SIGN_DEMO_IMAGE" --repository octo-org/wrong --tsa-certs "\$OPK_SIGN_DEMO_TSA_CERTS" --no-trust-repo; echo "exit \$?"  # 11: policy mismatch
  \$ opk-sign dev push-sample "\$OPK_SIGN_DEMO_REGISTRY/octo-org/hello-opk:v2" && opk-sign sign "\$OPK_SIGN_DEMO_REGISTRY/octo-org/hello-opk:v2"
EOF
if ((keep)); then
    echo "  \$ scripts/demo.sh --stop"
fi
