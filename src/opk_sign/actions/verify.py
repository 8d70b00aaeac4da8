"""The verify action (verify/action.yml, entrypoint.py ``verify``): images and a policy in,
a verdict per image out, through the same library calls as ``opk-sign verify``.

The runner contract is :mod:`opk_sign.actions.runner`'s; here: the inputs, the verification they
describe (put together by ``opk_sign.verify.options``, as for the CLI), the outputs, a table in
the step summary and an ``::error`` annotation per image that failed. The human-readable report in
the log is fenced with ``::stop-commands::`` because it quotes what registries and signers said.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from opk_sign.actions import runner
from opk_sign.actions.report import (
    ResultRow,
    error_annotation,
    md_details,
    result_document,
    verification_table,
)
from opk_sign.errors import EXIT_OK, UsageError
from opk_sign.issuer import default_issuer
from opk_sign.oci.credentials import ExplicitCredentials
from opk_sign.oci.dockerconfig import DockerConfig
from opk_sign.oci.keychain import Keychain
from opk_sign.policy import policy_field_names
from opk_sign.verify.options import (
    OptionsFor,
    VerifyOptions,
    build_policy,
    build_verify_options,
    describe_policy,
)
from opk_sign.verify.outcome import ImageResult, tally, worst_exit_code

#: Images one step may verify; as ``opk-sign verify --images-from``.
MAX_IMAGES: Final = 100_000
GHCR: Final = "ghcr.io"

#: The library's flags, in the verify action's terms (see runner.Vocabulary): the policy flags
#: are inputs of the same names; what no input does is said otherwise.
WORDS: Final = runner.COMMON_WORDS | {
    **{f"--{name}": f"the {name} input" for name in policy_field_names()},
    "--policy FILE": "the policy-file input",
    "--policy": "the policy-file input",
    "--attestation": "the attestation input",
    # verify/options.py: no_policy_error, build_policy (both given), the mapping's refusal.
    "--repository octo-org/app": "the input `repository: octo-org/app`",
    "as flags": "as policy inputs",
    "flags also given:": "policy inputs also given:",
    "flags (--repository ...)": "policy inputs (repository, signer-workflow ...)",
    # verify/bundle.py, a copy signed in another repository: only a policy file can say so.
    "say so: --signed-repository {}": "say so in the policy file: `signed-repository: {}`",
    "--signed-repository": "the signed-repository input",
    # verify/options.py and tlog/verify.py, a policy file saying `transparency: required`: the
    # action has no keys-file input, the trust repository distributes the log keys.
    "--tlog-keys FILE": "a trust repository whose tlog/keys.txt target names them",
    "give --tlog-keys FILE, or install": "install",
    "--tlog-keys": "a trust repository's tlog/keys.txt target",
    "--require-tlog": "the policy file's `transparency: required`",
    # oci/auth.py's hint for a registry that wants credentials none were given for.
    "(--registry-username with OPK_SIGN_REGISTRY_PASSWORD, or OPK_SIGN_REGISTRY_TOKEN)": (
        "(the github-token input, for ghcr.io)"
    ),
}


@dataclass(frozen=True)
class VerifyActionInputs:
    images: tuple[str, ...]
    #: Policy fields given (``repository``, ``ref-regex`` ...), the issuer excepted.
    policy: Mapping[str, str] = field(default_factory=dict)
    policy_file: str = ""
    issuer: str = ""
    attestations: tuple[str, ...] = ()
    #: Repositories the images may have been signed in besides their own (copies, mirrors).
    signed_repositories: tuple[str, ...] = ()
    fail_on_error: bool = True
    github_token: str = ""


def read_inputs() -> VerifyActionInputs:
    """The action's inputs from the runner (``INPUT_*``); nothing is contacted yet."""
    github_token = runner.secret_input("github-token")
    images = runner.lines_input("images")
    if not images:
        raise UsageError(
            "the 'images' input is required: one image reference per line",
            hint="e.g. `images: ghcr.io/octo-org/app@sha256:…`",
        )
    if len(images) > MAX_IMAGES:
        raise UsageError(f"more than {MAX_IMAGES} images in one step")
    policy = {
        name: value
        for name in policy_field_names()
        if name != "issuer" and (value := runner.text_input(name))
    }
    return VerifyActionInputs(
        images=images,
        policy=policy,
        policy_file=runner.text_input("policy-file"),
        issuer=runner.text_input("issuer"),
        attestations=runner.lines_input("attestation"),
        signed_repositories=runner.lines_input("signed-repository"),
        fail_on_error=runner.bool_input("fail-on-error", default=True),
        github_token=github_token,
    )


def verification(inputs: VerifyActionInputs, env: Mapping[str, str]) -> VerifyOptions | OptionsFor:
    """The verification the inputs describe, put together as for ``opk-sign verify``."""
    issuer = inputs.issuer or default_issuer(env)
    policy_file = (
        runner.workspace_path("policy-file", inputs.policy_file, env)
        if inputs.policy_file
        else None
    )
    return build_verify_options(
        policy=build_policy(inputs.policy, policy_file, issuer=issuer),
        issuer=issuer,
        attestations=inputs.attestations,
        signed_in=inputs.signed_repositories,
    )


def outputs(results: Sequence[ImageResult]) -> dict[str, str]:
    return {
        "verified": "true" if results and all(r.verified for r in results) else "false",
        "results": json.dumps([result_document(r) for r in results]),
        "failed-images": json.dumps([r.image for r in results if not r.verified]),
    }


def summary_markdown(results: Sequence[ImageResult], policy: str) -> str:
    lines = [
        "### opk-sign: image verification",
        "",
        f"**{tally(results)}**",
        "",
        *verification_table([ResultRow(r) for r in results]),
        "",
        md_details("Identity policy", policy),
        "",
    ]
    return "\n".join(lines)


def annotation_lines(results: Sequence[ImageResult]) -> list[str]:
    return [
        error_annotation(
            f"{r.image}: {r.message}",
            title=f"opk-sign: {r.image} not verified ({r.outcome.label})",
        )
        for r in results
        if not r.verified
    ]


def in_action_words(result: ImageResult) -> ImageResult:
    """The result with its messages in the action's terms (``required by the attestation input``,
    not ``--attestation``): for the log, the annotations, the summary and the outputs."""
    return replace(
        result,
        message=WORDS(result.message),
        manifests=tuple(replace(m, message=WORDS(m.message)) for m in result.manifests),
    )


def exit_code(results: Sequence[ImageResult], *, fail_on_error: bool) -> int:
    """The verify contract's code (the worst image's), or 0 when asked not to fail."""
    return worst_exit_code(results) if fail_on_error and results else EXIT_OK


# --- I/O ------------------------------------------------------------------------------------------


def _keychain(inputs: VerifyActionInputs, env: Mapping[str, str]) -> Keychain:
    """The github-token input for ghcr.io only, then the docker config (docs/action.md)."""
    explicit = ExplicitCredentials.for_registry(
        GHCR,
        username=env.get("GITHUB_ACTOR") or None,
        token=inputs.github_token or None,
        source="the github-token input",
    )
    return Keychain.default(
        explicit, docker_config=DockerConfig.load(runner.docker_config_dir(env))
    )


def run(env: Mapping[str, str]) -> int:
    from opk_sign.oci.client import RegistryClient
    from opk_sign.verify.image import verify_images
    from opk_sign.verify.outcome import format_result

    inputs = read_inputs()
    options = verification(inputs, env)
    with RegistryClient(_keychain(inputs, env)) as client:
        results = [in_action_words(r) for r in verify_images(inputs.images, options, client=client)]
    runner.print_untrusted([format_result(r) for r in results] + [tally(results)])
    runner.set_outputs(outputs(results))
    runner.append_summary(summary_markdown(results, describe_policy(options)), env)
    for line in annotation_lines(results):
        print(line)
    return exit_code(results, fail_on_error=inputs.fail_on_error)


def main() -> int:
    """Run the verify action with the process environment."""
    return runner.run_main(run, title="opk-sign verify", vocabulary=WORDS)
