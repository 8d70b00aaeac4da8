#!/usr/bin/env bash
# The release steps (docs/release.md). .github/workflows/release.yml runs them on a version tag;
# `scripts/release.sh rehearse` runs them all here, against any registry, so a release can be
# tried before the tag is pushed (tests/integration/test_release_rehearsal.py does, on loopback).
#
#   scripts/release.sh image     build the action image and push it; prints NAME@DIGEST
#   scripts/release.sh sign REF  sign REF (with provenance) through the signing action's own
#                                code path: entrypoint.py with the INPUT_* variables the runner
#                                sets, as .github/workflows/sign.yml runs it (CI: that workflow)
#   scripts/release.sh verify REF   opk-sign verify REF with the signing workflow's identity
#   scripts/release.sh dists     sdist and wheel into dist/, checked with twine
#   scripts/release.sh pin REF   write action.yml and verify/action.yml with image: docker://REF
#   scripts/release.sh rehearse  all of the above, in order
#
# Settings (environment):
#   RELEASE_VERSION    the version released, without the v (default: from GITHUB_REF_NAME vX.Y.Z,
#                      else opk_sign.__version__); must equal opk_sign.__version__
#   RELEASE_REGISTRY   where the image goes (default ghcr.io)
#   RELEASE_REPOSITORY its repository there (default: GITHUB_REPOSITORY, lower-cased)
#   RELEASE_PLATFORMS  platforms to build (default: the host's; CI: linux/amd64,linux/arm64)
#   RELEASE_BUILDER    docker (buildx, CI) or buildah (default: whichever is installed; buildah
#                      builds the host's platform only here)
#   RELEASE_SIGNER_WORKFLOW  the identity verify pins (default:
#                      $GITHUB_REPOSITORY/.github/workflows/sign.yml@refs/tags/v$RELEASE_VERSION)
#   BASE_IMAGE         overrides the Dockerfile's pinned base (the tests' Debian base)
#   OPK_SIGN           the opk-sign command (default: opk-sign on PATH)
#   PYTHON             the Python that builds the dists and runs the entry point (default python3)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON="${PYTHON:-python3}"
OPK_SIGN="${OPK_SIGN:-opk-sign}"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

die() {
    echo "release: $*" >&2
    exit 1
}
log() { echo "release: $*" >&2; }

package_version() {
    "$PYTHON" -c 'import sys; sys.path.insert(0, "src"); from opk_sign._version import __version__; print(__version__)'
}

version() {
    local tagged="${GITHUB_REF_NAME:-}" version="${RELEASE_VERSION:-}"
    if [[ -z "$version" && "$tagged" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then
        version="${tagged#v}"
    fi
    [[ -n "$version" ]] || version="$(package_version)"
    [[ "$version" == "$(package_version)" ]] ||
        die "version $version is not the package's ($(package_version), src/opk_sign/_version.py)"
    printf '%s\n' "$version"
}

repository() {
    local repository="${RELEASE_REPOSITORY:-${GITHUB_REPOSITORY:-}}"
    [[ -n "$repository" ]] || die "set RELEASE_REPOSITORY (or GITHUB_REPOSITORY), e.g. octo-org/opk-sign"
    printf '%s/%s\n' "${RELEASE_REGISTRY:-ghcr.io}" "${repository,,}"
}

signer_workflow() {
    local repository="${GITHUB_REPOSITORY:-${RELEASE_REPOSITORY:-}}"
    printf '%s\n' "${RELEASE_SIGNER_WORKFLOW:-$repository/.github/workflows/sign.yml@refs/tags/v$(version)}"
}

builder() {
    if [[ -n "${RELEASE_BUILDER:-}" ]]; then
        printf '%s\n' "$RELEASE_BUILDER"
    elif command -v buildah >/dev/null 2>&1; then
        echo buildah
    else
        echo docker
    fi
}

# Outputs for the workflow (GITHUB_OUTPUT), and always on stdout.
output() {
    [[ -z "${GITHUB_OUTPUT:-}" ]] || printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
    printf '%s\n' "$2"
}

cmd_image() {
    local version name revision source platforms digest scratch="$SCRATCH/image"
    version="$(version)"
    name="$(repository)"
    revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    source="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-${RELEASE_REPOSITORY:-opk-sign/opk-sign}}"
    platforms="${RELEASE_PLATFORMS:-}"
    local args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source")
    [[ -z "${BASE_IMAGE:-}" ]] || args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    mkdir -p "$scratch"
    case "$(builder)" in
    docker)
        # CI: one multi-platform index, pushed by digest (the tag is only a convenience).
        log "building $name:$version for ${platforms:-linux/amd64,linux/arm64} (docker buildx)"
        docker buildx build "${args[@]}" --platform "${platforms:-linux/amd64,linux/arm64}" \
            --provenance=false --sbom=false --metadata-file "$scratch/metadata.json" \
            --tag "$name:$version" --push .
        digest="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$scratch/metadata.json")"
        ;;
    buildah)
        # Here: the host's platform (buildah cannot run foreign RUN steps without emulation).
        log "building $name:$version (buildah, host platform)"
        local tls=()
        [[ "${RELEASE_INSECURE_REGISTRY:-}" != 1 ]] || tls=(--tls-verify=false)
        buildah bud --isolation "${BUILDAH_ISOLATION:-chroot}" --layers "${tls[@]}" "${args[@]}" \
            ${platforms:+--platform "$platforms"} --tag "$name:$version" --file Dockerfile . >&2
        buildah push --quiet "${tls[@]}" --digestfile "$scratch/digest" "$name:$version" \
            "docker://$name:$version" >&2
        digest="$(cat "$scratch/digest")"
        ;;
    *) die "RELEASE_BUILDER must be docker or buildah" ;;
    esac
    [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "no digest for the pushed image (got '$digest')"
    output image "$name@$digest"
}

# Sign through the action's entry point: the code the reusable signing workflow runs (its step
# `uses: ./.opk-sign` runs this entry point in the action image) with the runner's variables.
cmd_sign() {
    local ref="${1:?usage: release.sh sign NAME@DIGEST}" scratch="$SCRATCH/sign" code
    mkdir -p "$scratch/workspace"
    : >"$scratch/output"
    : >"$scratch/summary"
    log "signing $ref (with provenance) through the signing action's entry point"
    code=0
    (
        cd "$scratch/workspace"
        env GITHUB_OUTPUT="$scratch/output" GITHUB_STEP_SUMMARY="$scratch/summary" \
            GITHUB_WORKSPACE="$scratch/workspace" RUNNER_TEMP="$scratch" \
            INPUT_IMAGE="$ref" INPUT_RECURSIVE=true INPUT_PROVENANCE=true INPUT_PREDICATE= \
            INPUT_PREDICATE-TYPE= INPUT_REGISTRY-USERNAME="${RELEASE_REGISTRY_USERNAME:-}" \
            INPUT_REGISTRY-PASSWORD="${RELEASE_REGISTRY_PASSWORD:-}" \
            INPUT_GITHUB-TOKEN="${GITHUB_TOKEN:-}" \
            INPUT_TIMESTAMP-URL="${RELEASE_TIMESTAMP_URL-https://timestamp.sigstore.dev/api/v1/timestamp}" \
            INPUT_BUNDLE-DIR= \
            "$PYTHON" "$ROOT/entrypoint.py"
    ) || code=$?
    [[ $code -eq 0 ]] || die "signing failed (exit $code)"
    grep -q '^identity' "$scratch/output" || die "the signing action wrote no identity output"
}

cmd_verify() {
    local ref="${1:?usage: release.sh verify NAME@DIGEST}" identity extra=()
    identity="$(signer_workflow)"
    # RELEASE_VERIFY_ARGS: more verify options, e.g. --no-trust-repo for a rehearsal.
    read -r -a extra <<<"${RELEASE_VERIFY_ARGS:-}"
    log "verifying $ref: signed by $identity, with SLSA provenance"
    "$OPK_SIGN" verify "$ref" --signer-workflow "$identity" \
        --attestation https://slsa.dev/provenance/v1 "${extra[@]}"
}

cmd_dists() {
    local version
    version="$(version)"
    rm -rf dist
    log "building the sdist and the wheel of opk-sign $version"
    # --no-isolation: the build backend is the locked one (requirements/build.txt), not whatever
    # an isolated build would download.
    "$PYTHON" -m build --no-isolation --sdist --wheel --outdir dist . >&2
    "$PYTHON" -m twine check --strict dist/* >&2
    ls dist/"opk_sign-$version.tar.gz" dist/"opk_sign-$version"-py3-none-any.whl >/dev/null ||
        die "dist/ does not hold the sdist and wheel of $version"
    output dists dist
}

# The release commit's action metadata: a SHA-pinned action then pins the signed image.
cmd_pin() {
    local ref="${1:?usage: release.sh pin NAME@DIGEST}"
    [[ "$ref" =~ ^[a-z0-9.:-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$ ]] ||
        die "pin needs NAME@sha256:DIGEST (got '$ref')"
    "$PYTHON" - "$ref" action.yml verify/action.yml <<'PY'
import re, sys
ref, *paths = sys.argv[1:]
for path in paths:
    text = open(path, encoding="utf-8").read()
    # runs.image: the only `  image:` line under `runs:`, with its comment lines above it.
    head, runs, tail = text.partition("\nruns:\n")
    if not runs:
        sys.exit(f"{path}: no runs section")
    tail, count = re.subn(
        r"(?m)^(?:  #.*\n)*  image: .*$",
        f"  # The released image, signed by opk-sign's signing workflow (docs/release.md).\n"
        f"  image: docker://{ref}",
        tail,
        count=1,
    )
    if count != 1:
        sys.exit(f"{path}: no runs.image line")
    with open(path, "w", encoding="utf-8") as out:
        out.write(head + runs + tail)
PY
    log "action.yml and verify/action.yml now run docker://$ref"
}

cmd_rehearse() {
    local image
    image="$(cmd_image)"
    cmd_sign "$image"
    cmd_verify "$image"
    cmd_dists >/dev/null
    cmd_pin "$image"
    output image "$image"
}

case "${1:-}" in
image | dists | rehearse) "cmd_$1" ;;
sign | verify | pin)
    command="$1"
    shift
    "cmd_$command" "$@"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
