"""The container action (action.yml, entrypoint.py): GitHub Actions inputs in, outputs out.

Runner contract: inputs arrive only as ``INPUT_*`` environment variables (read with
actions-toolkit), never through a shell; outputs go to ``$GITHUB_OUTPUT`` with a random heredoc
delimiter (multiline-safe), a Markdown report to ``$GITHUB_STEP_SUMMARY``, errors as ``::error::``
annotations. Secrets (the registry password, the token-request token and the ID token) are
registered with ``::add-mask::`` before anything could print them, and are never written anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from actions_toolkit import core

from opk_sign.errors import EXIT_FAILURE, OpkSignError, UsageError
from opk_sign.oci.credentials import ExplicitCredentials, Keychain
from opk_sign.oci.dockerconfig import DockerConfig
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider, TokenProvider
from opk_sign.oidc.github import REQUEST_TOKEN_VAR
from opk_sign.sign.image import CustomPredicate, SigningOptions, SigningResult, sign_image
from opk_sign.trust.timestamp import DEFAULT_TIMESTAMP_URL, TIMESTAMP_URL_VAR

#: Where GitHub mounts the runner's ``$RUNNER_TEMP/_github_home`` inside a container action.
CONTAINER_HOME: Final = Path("/github/home")
GHCR: Final = "ghcr.io"
#: Issuer override for GHES with a custom issuer, or for the local emulator (docs/action.md).
ISSUER_VAR: Final = "OPK_SIGN_OIDC_ISSUER"
#: The runner always sets it (action.yml's default when the workflow gives none).
TIMESTAMP_URL_INPUT: Final = "INPUT_TIMESTAMP-URL"


@dataclass(frozen=True)
class ActionInputs:
    image: str
    recursive: bool
    provenance: bool
    predicate: str
    predicate_type: str
    registry_username: str
    registry_password: str
    github_token: str
    #: The timestamp-url input: "" disables timestamps, None means not set at all.
    timestamp_url: str | None = None


def _text_input(name: str, *, required: bool = False) -> str:
    value = str(core.get_input(name))
    if required and not value:
        raise UsageError(f"the {name!r} input is required", hint=f"set `with: {name}: …`")
    if value.startswith("-"):
        # Values go to the library, not a command line; refusing them anyway means no input can
        # ever be taken for an option, whatever a later version does with it.
        raise UsageError(f"the {name!r} input looks like a command-line flag: {value!r}")
    if "\n" in value or "\r" in value:
        raise UsageError(f"the {name!r} input must be a single line")
    return value


def _bool_input(name: str) -> bool:
    try:
        return bool(core.get_boolean_input(name))
    except TypeError:
        raise UsageError(
            f"the {name!r} input must be true or false, got {core.get_input(name)!r}"
        ) from None


def read_inputs() -> ActionInputs:
    # Secrets are masked first, so that not even an error about them can show them.
    password = str(core.get_input("registry-password"))
    token = str(core.get_input("github-token"))
    for secret in (password, token):
        if secret:
            core.set_secret(secret)
    return ActionInputs(
        image=_text_input("image", required=True),
        recursive=_bool_input("recursive"),
        provenance=_bool_input("provenance"),
        predicate=_text_input("predicate"),
        predicate_type=_text_input("predicate-type"),
        registry_username=_text_input("registry-username"),
        registry_password=password,
        github_token=token,
        timestamp_url=(_text_input("timestamp-url") if TIMESTAMP_URL_INPUT in os.environ else None),
    )


def docker_config_dir(env: Mapping[str, str]) -> Path | None:
    """The docker config directory the container can see.

    ``DOCKER_CONFIG`` if it exists here; a ``DOCKER_CONFIG`` naming the runner's
    ``…/_github_home/…`` (not mounted under that name) mapped to ``/github/home/…``; else
    ``/github/home/.docker``; else None (``$HOME/.docker``, the library's default).
    """
    configured = env.get("DOCKER_CONFIG")
    if configured:
        path = Path(configured)
        if path.is_dir():
            return path
        parts = path.parts
        if "_github_home" in parts:
            mapped = CONTAINER_HOME.joinpath(*parts[parts.index("_github_home") + 1 :])
            if mapped.is_dir():
                return mapped
    default = CONTAINER_HOME / ".docker"
    return default if default.is_dir() else None


def keychain(inputs: ActionInputs, reference: Reference, env: Mapping[str, str]) -> Keychain:
    """Explicit inputs first (bound to the image's registry), then the docker config."""
    password = inputs.registry_password
    username = inputs.registry_username or None
    source = "the registry-username/registry-password inputs"
    if not password and reference.registry == GHCR and inputs.github_token:
        password, source = inputs.github_token, "the github-token input"
    if password and not username:
        username = env.get("GITHUB_ACTOR") or "opk-sign"
    if username and not password:
        raise UsageError(
            "registry-username is set but registry-password is empty",
            hint="pass the password as a secret: registry-password: ${{ secrets.… }}",
        )
    explicit = ExplicitCredentials.for_registry(
        reference.registry, username=username, password=password or None, source=source
    )
    return Keychain.default(explicit, docker_config=DockerConfig.load(docker_config_dir(env)))


class _MaskingProvider:
    """Registers the ID token with the runner's masker the moment it exists."""

    def __init__(self, inner: TokenProvider) -> None:
        self._inner = inner

    @property
    def issuer_hint(self) -> str:
        return self._inner.issuer_hint

    def id_token(self, audience: str) -> str:
        token = self._inner.id_token(audience)
        core.set_secret(token)
        return token


def signing_options(inputs: ActionInputs, env: Mapping[str, str]) -> SigningOptions:
    """The library options from the inputs (a relative predicate path is in the workspace)."""
    predicate = None
    if inputs.predicate_type and not inputs.predicate:
        raise UsageError("the predicate-type input needs the predicate input (a JSON file)")
    if inputs.predicate:
        path = Path(inputs.predicate)
        if not path.is_absolute():
            path = Path(env.get("GITHUB_WORKSPACE") or ".") / path
        predicate = CustomPredicate.from_file(path, inputs.predicate_type or None)
    if inputs.timestamp_url is None:  # not run by a runner: the CLI's default
        timestamp_url: str | None = env.get(TIMESTAMP_URL_VAR) or DEFAULT_TIMESTAMP_URL
    else:
        timestamp_url = inputs.timestamp_url or None  # empty: no timestamps
    return SigningOptions(
        recursive=inputs.recursive,
        provenance=inputs.provenance,
        predicate=predicate,
        server_url=env.get("GITHUB_SERVER_URL") or "https://github.com",
        timestamp_url=timestamp_url,
    )


def write_outputs(result: SigningResult) -> None:
    core.set_output("digest", result.digest)
    core.set_output("signatures", json.dumps(result.signatures))
    core.set_output("attestations", json.dumps(result.attestations))
    core.set_output("identity", result.identity.principal)
    core.set_output("issuer", result.issuer)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(result: SigningResult) -> str:
    """The step summary: what was signed, by whom, and the referrers pushed."""
    lines = [
        "### opk-sign: image signed",
        "",
        f"**Image** `{_cell(str(result.reference))}`  ",
        f"**Identity** `{_cell(result.identity.principal)}`  ",
        f"**Issuer** `{_cell(result.issuer)}`",
        "",
        "| Manifest | Platform | Signed | Attestations |",
        "| --- | --- | --- | --- |",
    ]
    for manifest in result.manifests:
        platform = "index" if manifest.is_index else (manifest.platform or "image")
        attestations = (
            "<br>".join(
                f"`{_cell(a.predicate_type)}` `{a.referrer[:19]}…`" for a in manifest.attestations
            )
            or "none"
        )
        lines.append(
            f"| `{manifest.digest}` | {_cell(platform)} | signature `{manifest.signature[:19]}…` "
            f"| {attestations} |"
        )
    lines += [
        "",
        "<details><summary>Raw result (JSON)</summary>",
        "",
        "```json",
        json.dumps(result.to_dict(), indent=2),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def write_summary(text: str, env: Mapping[str, str]) -> None:
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as summary:
        summary.write(text)


def run(env: Mapping[str, str]) -> int:
    inputs = read_inputs()
    request_token = env.get(REQUEST_TOKEN_VAR)
    if request_token:
        core.set_secret(request_token)
    reference = Reference.parse(inputs.image)
    options = signing_options(inputs, env)
    provider = _MaskingProvider(GitHubActionsProvider(env=env, issuer=env.get(ISSUER_VAR) or None))
    from opk_sign.oci.client import RegistryClient

    with RegistryClient(keychain(inputs, reference, env)) as client:
        result = sign_image(reference, provider=provider, client=client, options=options)
    write_outputs(result)
    write_summary(summary_markdown(result), env)
    core.info(f"signed {result.reference} as {result.identity.principal}")
    for manifest in result.manifests:
        kind = "index" if manifest.is_index else (manifest.platform or "image")
        core.info(f"  {manifest.digest} ({kind}): signature {manifest.signature}")
        for attestation in manifest.attestations:
            core.info(f"    attestation {attestation.referrer} ({attestation.predicate_type})")
    return 0


def main() -> int:
    """Run the action with the process environment (inputs are read from it by actions-toolkit)."""
    try:
        return run(os.environ)
    except OpkSignError as err:
        core.error(err.diagnostics(), title="opk-sign")
        return err.exit_code or EXIT_FAILURE
    except Exception as err:  # the runner must always get an annotation, not a bare traceback
        core.error(f"opk-sign failed unexpectedly: {type(err).__name__}: {err}", title="opk-sign")
        return EXIT_FAILURE
