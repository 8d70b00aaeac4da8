"""The container action (action.yml, entrypoint.py): GitHub Actions inputs in, outputs out.

The runner contract is :mod:`opk_sign.actions.runner`'s. Secrets (the registry password, the
token-request token and the ID token) are registered with ``::add-mask::`` before anything could
print them, and are never written anywhere.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from actions_toolkit import core

from opk_sign.actions import runner
from opk_sign.errors import UsageError
from opk_sign.issuer import ISSUER_VAR
from opk_sign.names import TLOG_MODE_VAR, TLOG_MODES, TLOG_URL_VAR
from opk_sign.oci.credentials import ExplicitCredentials
from opk_sign.oci.digest import split_digest
from opk_sign.oci.dockerconfig import DockerConfig
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference
from opk_sign.oidc import GitHubActionsProvider, TokenProvider
from opk_sign.oidc.github import REQUEST_TOKEN_VAR
from opk_sign.sign.image import CustomPredicate, SigningOptions, SigningResult, sign_image
from opk_sign.tlog.modes import DEFAULT_TLOG_URL
from opk_sign.trust.tsa import DEFAULT_TIMESTAMP_URL, TIMESTAMP_URL_VAR

if TYPE_CHECKING:
    from opk_sign.oci.client import RegistryClient

GHCR: Final = "ghcr.io"
#: The bundle-dir input's default, relative to the workspace (a path later steps can use too:
#: the container sees the workspace at another absolute path than the runner).
DEFAULT_BUNDLE_DIR: Final = ".opk-sign"

#: The library's flags, in the signing action's terms (see runner.Vocabulary).
WORDS: Final = runner.COMMON_WORDS | {
    "--no-provenance": "`provenance: false`",
    # trust/tsa.py's hint names the flag, the variable and the input: here only the input is.
    "--timestamp-url, OPK_SIGN_TIMESTAMP_URL, or the action's timestamp-url input": (
        "the timestamp-url input"
    ),
    "--timestamp-url": "the timestamp-url input",
    "--no-timestamp": '`timestamp-url: ""`',
    # tlog/client.py's hint names the flags, the variable and the input: here only the inputs.
    "--tlog-url, OPK_SIGN_TLOG_URL, or the action's tlog-url input": "the tlog-url input",
    "--tlog-url": "the tlog-url input",
    "--tlog never": "`tlog: never`",
    "--tlog": "the tlog input",
    # oci/auth.py's hint for a registry that wants credentials none were given for.
    "(--registry-username with OPK_SIGN_REGISTRY_PASSWORD, or OPK_SIGN_REGISTRY_TOKEN)": (
        "(the registry-username and registry-password inputs)"
    ),
    "--registry-username": "the registry-username input",
    # verify/kit.py: where the kit goes.
    "--dir": "the bundle-dir input",
}


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
    #: Where in the workspace to write the bundles (an offline kit per image); "" for none.
    bundle_dir: str = DEFAULT_BUNDLE_DIR
    #: The tlog and tlog-url inputs (docs/transparency.md); None: not set (the CLI's defaults).
    tlog: str | None = None
    tlog_url: str | None = None


def read_inputs() -> ActionInputs:
    # Secrets are masked first, so that not even an error about them can show them.
    password = runner.secret_input("registry-password")
    token = runner.secret_input("github-token")
    return ActionInputs(
        image=runner.text_input("image", required=True),
        recursive=runner.bool_input("recursive", default=False),
        provenance=runner.bool_input("provenance", default=False),
        predicate=runner.text_input("predicate"),
        predicate_type=runner.text_input("predicate-type"),
        registry_username=runner.text_input("registry-username"),
        registry_password=password,
        github_token=token,
        # The runner always sets it (action.yml's default when the workflow gives none).
        timestamp_url=(
            runner.text_input("timestamp-url") if runner.input_given("timestamp-url") else None
        ),
        bundle_dir=(
            runner.text_input("bundle-dir")
            if runner.input_given("bundle-dir")
            else DEFAULT_BUNDLE_DIR
        ),
        tlog=runner.text_input("tlog") if runner.input_given("tlog") else None,
        tlog_url=runner.text_input("tlog-url") if runner.input_given("tlog-url") else None,
    )


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
    return Keychain.default(
        explicit, docker_config=DockerConfig.load(runner.docker_config_dir(env))
    )


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
    """The library options from the inputs (the predicate file must be in the workspace)."""
    predicate = None
    if inputs.predicate_type and not inputs.predicate:
        raise UsageError("the predicate-type input needs the predicate input (a JSON file)")
    if inputs.predicate and not inputs.predicate_type:
        raise UsageError(
            "the predicate input needs the predicate-type input (the predicate's type URI)",
            hint="e.g. predicate-type: https://spdx.dev/Document",
        )
    if inputs.predicate:
        path = runner.workspace_path("predicate", inputs.predicate, env)
        predicate = CustomPredicate.from_file(path, inputs.predicate_type or None)
    if inputs.timestamp_url is None:  # not run by a runner: the CLI's default
        timestamp_url: str | None = env.get(TIMESTAMP_URL_VAR) or DEFAULT_TIMESTAMP_URL
    else:
        timestamp_url = inputs.timestamp_url or None  # empty: no timestamps
    tlog = inputs.tlog or env.get(TLOG_MODE_VAR) or "auto"
    if tlog not in TLOG_MODES:
        raise UsageError(f"the tlog input must be auto, always or never, not {tlog!r}")
    return SigningOptions(
        recursive=inputs.recursive,
        provenance=inputs.provenance,
        predicate=predicate,
        server_url=env.get("GITHUB_SERVER_URL") or "https://github.com",
        timestamp_url=timestamp_url,
        tlog=tlog,
        tlog_url=inputs.tlog_url or env.get(TLOG_URL_VAR) or DEFAULT_TLOG_URL,
    )


def outputs(result: SigningResult) -> dict[str, str]:
    return {
        "digest": result.digest,
        "signatures": json.dumps(result.signatures),
        "attestations": json.dumps(result.attestations),
        "identity": result.identity.principal,
        "issuer": result.issuer,
    }


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


def run(env: Mapping[str, str]) -> int:
    inputs = read_inputs()
    runner.mask(env.get(REQUEST_TOKEN_VAR))
    reference = Reference.parse(inputs.image)
    options = signing_options(inputs, env)
    provider = _MaskingProvider(GitHubActionsProvider(env=env, issuer=env.get(ISSUER_VAR) or None))
    from opk_sign.oci.client import RegistryClient

    with RegistryClient(keychain(inputs, reference, env)) as client:
        result = sign_image(reference, provider=provider, client=client, options=options)
        kit = write_bundles(client, inputs, result, env)
    runner.set_outputs({**outputs(result), "bundle-path": kit})
    runner.append_summary(summary_markdown(result), env)
    core.info(f"signed {result.reference} as {result.identity.principal}")
    for manifest in result.manifests:
        kind = "index" if manifest.is_index else (manifest.platform or "image")
        core.info(f"  {manifest.digest} ({kind}): signature {manifest.signature}")
        for attestation in manifest.attestations:
            core.info(f"    attestation {attestation.referrer} ({attestation.predicate_type})")
    return 0


def write_bundles(
    client: RegistryClient, inputs: ActionInputs, result: SigningResult, env: Mapping[str, str]
) -> str:
    """The image's offline kit (docs/offline.md), as `opk-sign download` writes it, under the
    bundle-dir input in the workspace; its path relative to the workspace ("" when disabled)."""
    if not inputs.bundle_dir:
        return ""
    from opk_sign.oidc.discovery import JWKSCache
    from opk_sign.verify.kit import KIT_FILE, TrustMaterial, download_kit

    workspace, parent = runner.workspace_dir("bundle-dir", inputs.bundle_dir, env)
    directory = parent / split_digest(result.digest)[1]
    relative = directory.relative_to(workspace)
    if directory.exists():
        if not (directory / KIT_FILE).is_file():
            raise UsageError(f"{relative} exists and is not a kit written by opk-sign")
        shutil.rmtree(directory)  # the same digest signed again in this job: the newer kit
    directory.parent.mkdir(parents=True, exist_ok=True)
    reference = f"{result.reference.repo()}@{result.digest}"
    material = TrustMaterial(jwks=JWKSCache().get(result.issuer))
    download_kit(client, reference, directory, issuer=result.issuer, material=material)
    return relative.as_posix()


def main() -> int:
    """Run the signing action with the process environment."""
    return runner.run_main(run, title="opk-sign", vocabulary=WORDS)
