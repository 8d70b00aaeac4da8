"""The verify action (verify/action.yml, entrypoint.py ``verify``): images and a policy in,
a verdict per image out, through the same library calls as ``opk-sign verify``.

Runner contract, as for the signing action (``opk_sign.actions.sign``): inputs arrive only as
``INPUT_*`` environment variables, never through a shell, and a value that looks like a
command-line flag is refused; outputs go to ``$GITHUB_OUTPUT`` (heredoc with a random delimiter),
a table to ``$GITHUB_STEP_SUMMARY``, and an ``::error`` annotation per image that failed. The
human-readable report in the log is wrapped in ``::stop-commands::`` because it quotes what
registries and signers said, which must never be taken for a workflow command.

The top of the module is pure (inputs from a mapping, options, outputs, summary, annotations);
``run`` and ``main`` do the I/O.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from opk_sign.actions.report import (
    ResultRow,
    error_annotation,
    md_details,
    parse_multiline,
    result_document,
    tally,
    untrusted_block,
    verification_table,
    worst_exit_code,
)
from opk_sign.actions.sign import docker_config_dir
from opk_sign.cli.options import ISSUER_VAR, policy_field_names, verification_parser
from opk_sign.errors import EXIT_FAILURE, EXIT_OK, OpkSignError, UsageError
from opk_sign.oci.credentials import ExplicitCredentials, Keychain
from opk_sign.oci.dockerconfig import DockerConfig
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.verify.image import ImageResult, VerifyOptions

#: Images one step may verify; as ``opk-sign verify --images-from``.
MAX_IMAGES: Final = 100_000
GHCR: Final = "ghcr.io"
_TRUE: Final = frozenset({"true", "True", "TRUE"})
_FALSE: Final = frozenset({"false", "False", "FALSE"})


@dataclass(frozen=True)
class VerifyActionInputs:
    images: tuple[str, ...]
    #: Policy fields given (``repository``, ``ref-regex`` ...), the issuer excepted.
    policy: Mapping[str, str] = field(default_factory=dict)
    policy_file: str = ""
    issuer: str = ""
    attestations: tuple[str, ...] = ()
    fail_on_error: bool = True
    github_token: str = ""


def _raw(env: Mapping[str, str], name: str) -> str:
    # The runner's name for an input: upper case, spaces as underscores, hyphens kept.
    return env.get(f"INPUT_{name.replace(' ', '_').upper()}", "").strip()


def _refuse_flag(name: str, value: str) -> None:
    if value.startswith("-"):
        # Values go to the library, never to a command line; refusing them anyway means no input
        # can be taken for an option, whatever a later version does with it.
        raise UsageError(f"the {name!r} input looks like a command-line flag: {value!r}")


def _single(env: Mapping[str, str], name: str) -> str:
    value = _raw(env, name)
    _refuse_flag(name, value)
    if "\n" in value or "\r" in value:
        raise UsageError(f"the {name!r} input must be a single line")
    return value


def _lines(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    values = parse_multiline(_raw(env, name))
    for value in values:
        _refuse_flag(name, value)
        if len(value.split()) > 1:
            raise UsageError(f"the {name!r} input takes one value per line, got {value!r}")
    return tuple(values)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _raw(env, name)
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"the {name!r} input must be true or false, got {value!r}")


def read_inputs(env: Mapping[str, str]) -> VerifyActionInputs:
    """The action's inputs from the ``INPUT_*`` variables; nothing is contacted yet."""
    images = _lines(env, "images")
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
        if name != "issuer" and (value := _single(env, name))
    }
    return VerifyActionInputs(
        images=images,
        policy=policy,
        policy_file=_single(env, "policy-file"),
        issuer=_single(env, "issuer"),
        attestations=_lines(env, "attestation"),
        fail_on_error=_bool(env, "fail-on-error", default=True),
        github_token=_raw(env, "github-token"),
    )


def verify_arguments(inputs: VerifyActionInputs, env: Mapping[str, str]) -> list[str]:
    """The inputs as ``opk-sign verify`` options (``--name=value``: a value is never an option)."""
    argv = [f"--{name}={value}" for name, value in inputs.policy.items()]
    argv.append(f"--issuer={inputs.issuer or env.get(ISSUER_VAR) or GITHUB_ISSUER}")
    if inputs.policy_file:
        policy = Path(inputs.policy_file)
        if not policy.is_absolute():
            policy = Path(env.get("GITHUB_WORKSPACE") or ".") / policy
        argv.append(f"--policy={policy}")
    argv.extend(f"--attestation={predicate_type}" for predicate_type in inputs.attestations)
    return argv


def options_namespace(inputs: VerifyActionInputs, env: Mapping[str, str]) -> argparse.Namespace:
    """The namespace ``opk-sign verify`` would parse from the inputs, for ``build_options``."""
    try:
        return verification_parser().parse_args(verify_arguments(inputs, env))
    except (argparse.ArgumentError, SystemExit) as err:
        raise UsageError(f"the inputs do not make a valid verification: {err}") from None


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
    return Keychain.default(explicit, docker_config=DockerConfig.load(docker_config_dir(env)))


def print_untrusted(lines: Sequence[str]) -> None:
    """Print text quoting registries and signers with workflow commands switched off."""
    print("\n".join(untrusted_block(lines, secrets.token_hex(16))), flush=True)


def run(env: Mapping[str, str]) -> int:
    from actions_toolkit import core

    from opk_sign.cli.verify import build_options, format_result
    from opk_sign.oci.client import RegistryClient
    from opk_sign.verify.image import verify_images

    if _raw(env, "github-token"):
        core.set_secret(_raw(env, "github-token"))
    inputs = read_inputs(env)
    options = build_options(options_namespace(inputs, env))
    with RegistryClient(_keychain(inputs, env)) as client:
        results = list(verify_images(client, inputs.images, options))
    print_untrusted([format_result(r) for r in results] + [tally(results)])
    for name, value in outputs(results).items():
        core.set_output(name, value)
    policy = (
        options.policy.describe()
        if isinstance(options, VerifyOptions)
        else "per image, from the trust repository's mapping"
    )
    write_summary(summary_markdown(results, policy), env)
    for line in annotation_lines(results):
        print(line)
    return exit_code(results, fail_on_error=inputs.fail_on_error)


def write_summary(text: str, env: Mapping[str, str]) -> None:
    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(text)


def main() -> int:
    """Run the verify action with the process environment."""
    try:
        return run(os.environ)
    except OpkSignError as err:
        print(error_annotation(err.diagnostics(), title="opk-sign verify"), flush=True)
        return err.exit_code or EXIT_FAILURE
    except Exception as err:  # the runner must always get an annotation, not a bare traceback
        message = f"opk-sign verify failed unexpectedly: {type(err).__name__}: {err}"
        print(error_annotation(message, title="opk-sign verify"), flush=True)
        return EXIT_FAILURE
