#!/usr/bin/env bash
# `make demo`: the main job end to end on loopback, as GitHub Actions would run it.
#
#   1. a registry (Debian's docker-registry, CNCF distribution), an RFC 3161 timestamp authority
#      (sigstore's timestamp-authority, tests/tsa) and the GitHub OIDC emulator start on 127.0.0.1;
#   2. a small two-platform image is pushed;
#   3. entrypoint.py (the container action) runs exactly as a runner runs it: INPUT_* variables,
#      the GITHUB_* context, the token-request variables, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY;
#   4. its outputs and step summary are shown, then `opk-sign inspect` shows the referrers;
#   5. `opk-sign verify` proves who signed it (and refuses a policy naming someone else);
#   6. everything is stopped and removed (also on failure or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
py="$repo/.venv/bin/python"
opk=("$repo/.venv/bin/opk-sign")
export PATH="${OPK_SIGN_TOOLS:-$HOME/.cache/opk-sign/tools}/bin:$PATH"

work="$(mktemp -d "${TMPDIR:-/tmp}/opk-sign-demo.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
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
echo "registry: http://$registry (CNCF distribution: no referrers API, so the tag fallback)"

tsa="127.0.0.1:$(free_port)"
opk-tsa --host 127.0.0.1 --port "${tsa#*:}" >"$work/tsa.log" 2>&1 &
pids+=("$!")
wait_for "http://$tsa/ping" "the timestamp authority"
timestamp_url="http://$tsa/api/v1/timestamp"
echo "timestamp authority: $timestamp_url (sigstore timestamp-authority, ephemeral in-memory key)"

# The job: octo-org/hello-opk, tag v1, signing through the reusable workflow, whose
# job_workflow_ref is what verifiers pin.
cat >"$work/claims.json" <<'JSON'
{"repository": "octo-org/hello-opk", "ref": "refs/tags/v1", "event_name": "push",
 "workflow_file": ".github/workflows/release.yml",
 "job_workflow_ref": "opk-sign/opk-sign/.github/workflows/sign.yml@refs/tags/v1"}
JSON
"${opk[@]}" dev github-oidc --claims "$work/claims.json" --env-file "$work/job.env" \
    >"$work/emulator.out" 2>"$work/emulator.err" &
pids+=("$!")
for _ in $(seq 1 100); do [[ -s "$work/job.env" ]] && break; sleep 0.1; done
issuer="$(sed -n 's/^# issuer: //p' "$work/emulator.out")"
[[ -n "$issuer" ]] || { cat "$work/emulator.err" >&2; exit 1; }
echo "OIDC issuer (emulated GitHub): $issuer"

step "2. Push a two-platform sample image"
image="$registry/octo-org/hello-opk:v1"
digest="$(DOCKER_CONFIG="$work/no-docker-config" "${opk[@]}" dev push-sample "$image" \
    --platform linux/amd64 --platform linux/arm64)"
echo "$image -> $digest"

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
DOCKER_CONFIG="$work/no-docker-config" "${opk[@]}" inspect "$image"

step "6. opk-sign verify: who signed it, proved from the registry alone"
# The TSA's certificate chain: its timestamps in the bundles are checked against it.
"$py" -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' \
    "http://$tsa/api/v1/timestamp/certchain" >"$work/tsa.pem"
verify=("${opk[@]}" verify "$image" --issuer "$issuer" --tsa-certs "$work/tsa.pem" --no-trust-repo)
DOCKER_CONFIG="$work/no-docker-config" "${verify[@]}" \
    --repository octo-org/hello-opk \
    --signer-workflow 'opk-sign/opk-sign/.github/workflows/sign.yml@refs/tags/v1' \
    --attestation https://slsa.dev/provenance/v1

step "   The same image against a policy naming another repository (exit 11 expected)"
status=0
DOCKER_CONFIG="$work/no-docker-config" "${verify[@]}" --repository octo-org/other || status=$?
echo "exit code: $status"
((status == 11)) || { echo "demo: expected exit code 11" >&2; exit 1; }

step "Done in $((SECONDS - started)) s; stopping the registry, the TSA and the emulator"
