"""Red-team findings on requirements that were dropped or decided wrongly, each pinned against an
image in an in-memory registry (the ImageSource protocol):

- F3: ``verify --bundle`` cannot check a source requirement, so it refuses it (usage, 2);
- F9: ``verify --from-dir`` honours every flag the registry path does (each enumerated);
- F6: junk opk-sign attestations next to a valid BuildKit one do not make it fail, and the
  BuildKit candidate cap yields "unknown" (13), never "invalid" (12);
- F8: ``library verify`` compares a plain manifest's platform (its config) with the entry's.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opk_sign.bundle import ATTESTATION_ARTIFACT_TYPE as OPK_ATTESTATION
from opk_sign.bundle import BUNDLE_MEDIA_TYPE, SIGNATURE_ARTIFACT_TYPE
from opk_sign.cli import options as cli_options
from opk_sign.cli import verify as cli_verify
from opk_sign.cli.library import missing_architectures, sources_of
from opk_sign.cli.main import build_parser, main
from opk_sign.errors import NotFoundError
from opk_sign.library.bashbrew import parse_library
from opk_sign.oci.buildkit import ATTESTATION_ARTIFACT_TYPE as BUILDKIT_ATTESTATION
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import Manifest, parse_manifest
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS
from opk_sign.policy import policy_from_document
from opk_sign.sign.signer import Signer
from opk_sign.verify import attestations
from opk_sign.verify.image import verify_bundle_offline, verify_image
from opk_sign.verify.kit import TrustMaterial, download_kit
from opk_sign.verify.options import VerifyOptions, build_verify_options
from opk_sign.verify.outcome import Outcome
from tests.helpers import Minted, mint

REPO = "ghcr.io/octo-org/app"
COMMIT = "a" * 40
OTHER_COMMIT = "0" * 40
GIT_REPO = "https://github.com/octo-org/app.git"
V1 = "https://slsa.dev/provenance/v1"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """One repository in memory: manifests by digest and tag, blobs, referrers by subject."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.referrers: dict[str, list[dict[str, Any]]] = {}

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        self.blobs[_digest(data)] = data
        return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}

    def manifest(self, doc: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
        data = json.dumps(doc).encode()
        digest = _digest(data)
        self.manifests[digest] = (doc["mediaType"], data)
        if tag:
            self.manifests[tag] = (doc["mediaType"], data)
        descriptor = {"mediaType": doc["mediaType"], "digest": digest, "size": len(data)}
        if "subject" in doc:
            listed = dict(descriptor)
            if "artifactType" in doc:
                listed["artifactType"] = doc["artifactType"]
            self.referrers.setdefault(doc["subject"]["digest"], []).append(listed)
        return descriptor

    # ImageSource
    def pull_manifest(self, ref: Any, digest: str | None = None) -> tuple[Descriptor, bytes]:
        key = digest or ref.digest or ref.tag
        if key not in self.manifests:
            raise NotFoundError(f"{key} not found")
        media_type, data = self.manifests[key]
        return Descriptor(media_type, _digest(data), len(data)), data

    def parse(self, descriptor: Descriptor, data: bytes) -> Manifest:
        return parse_manifest(data, descriptor.media_type)

    def list_referrers(
        self, repo: Any, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        found = [Descriptor.from_dict(d) for d in self.referrers.get(digest, [])]
        return [d for d in found if artifact_type in (None, d.artifact_type)]

    def get_blob(self, repo: Any, digest: str, max_size: int = 1 << 30) -> bytes:
        return self.blobs[digest]


@pytest.fixture(scope="module")
def minted() -> Minted:
    return mint(repository="octo-org/app")


def _signer(minted: Minted) -> Signer:
    return Signer(minted.user_key, minted.pkt, minted.pkt.claims())


def _sign(
    reg: Registry, minted: Minted, digest: str, artifact_type: str = SIGNATURE_ARTIFACT_TYPE
) -> None:
    """An opk-sign referrer of ``digest`` holding a signature bundle (as an attestation: junk)."""
    layer = reg.blob(_signer(minted).signature(REPO, digest).to_json(), BUNDLE_MEDIA_TYPE)
    reg.blobs[_digest(b"{}")] = b"{}"
    reg.manifest(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": _digest(b"{}"),
                "size": 2,
            },
            "layers": [layer],
            "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1},
        }
    )


def _platform_manifest(reg: Registry, platform: str = "linux/amd64", tag: str | None = None) -> str:
    os_, arch = platform.split("/")[:2]
    config = reg.blob(json.dumps({"os": os_, "architecture": arch}).encode(), OCI_CONFIG)
    layer = reg.blob(platform.encode(), "application/vnd.oci.image.layer.v1.tar")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    return str(reg.manifest(doc, tag=tag)["digest"])


def _provenance(about: str, predicate: dict[str, Any] | None = None) -> bytes:
    predicate = predicate or {
        "buildDefinition": {
            "buildType": "https://mobyproject.org/buildkit@v1",
            "externalParameters": {"configSource": {"uri": GIT_REPO, "digest": {"sha1": COMMIT}}},
        },
        "runDetails": {"builder": {"id": ""}},
    }
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": V1,
            "subject": [{"name": "pkg:docker/x", "digest": {"sha256": about.split(":")[1]}}],
            "predicate": predicate,
        }
    ).encode()


def _attestation_manifest(reg: Registry, about: str, statement: bytes) -> dict[str, Any]:
    layer = reg.blob(statement, "application/vnd.in-toto+json")
    layer["annotations"] = {"in-toto.io/predicate-type": V1}
    return reg.manifest(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUILDKIT_ATTESTATION,
            "config": reg.blob(b"{}", OCI_CONFIG),
            "layers": [layer],
            "subject": {"mediaType": OCI_MANIFEST, "digest": about, "size": 1},
        }
    )


def _buildkit_image(reg: Registry, minted: Minted) -> str:
    """A signed index: one signed linux/amd64 manifest and BuildKit's attestation manifest."""
    platform = _platform_manifest(reg)
    _sign(reg, minted, platform)
    attestation = _attestation_manifest(reg, platform, _provenance(platform))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": platform,
                "size": 1,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            dict(
                attestation,
                platform={"os": "unknown", "architecture": "unknown"},
                annotations={
                    "vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": platform,
                },
            ),
        ],
    }
    _sign(reg, minted, reg.manifest(index, tag="v1")["digest"])
    return platform


def _options(minted: Minted, **kwargs: Any) -> VerifyOptions:
    options = build_verify_options(
        policy=policy_from_document({"repository": "octo-org/app"}),
        keys=StaticJWKS(GITHUB_ISSUER, minted.jwks),
        trust_repository=False,
        **kwargs,
    )
    assert isinstance(options, VerifyOptions)
    return options


# --- F3: verify --bundle and a source requirement -------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [{"source_commit": OTHER_COMMIT}, {"source_repository": "https://github.com/nobody/x"}],
)
def test_a_bundle_cannot_satisfy_a_source_requirement(
    minted: Minted, source: dict[str, str]
) -> None:
    digest = "sha256:" + "ab" * 32
    bundle = _signer(minted).signature(REPO, digest)
    assert verify_bundle_offline(bundle, f"{REPO}@{digest}", _options(minted)).verified
    result = verify_bundle_offline(bundle, f"{REPO}@{digest}", _options(minted, **source))
    assert result.outcome is Outcome.USAGE_ERROR and result.exit_code == 2
    assert "--bundle cannot check source-" in result.message


def _bundle_files(tmp_path: Path, minted: Minted, digest: str) -> list[str]:
    bundle, jwks = tmp_path / "bundle.json", tmp_path / "jwks.json"
    bundle.write_bytes(_signer(minted).signature(REPO, digest).to_json())
    jwks.write_text(json.dumps(minted.jwks))
    return ["--bundle", str(bundle), "--jwks", str(jwks)]


def test_verify_bundle_refuses_source_flags_and_policy_fields(
    tmp_path: Path, minted: Minted, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = "sha256:" + "ab" * 32
    common = ["verify", "--no-trust-repo", *_bundle_files(tmp_path, minted, digest)]
    image = f"{REPO}@{digest}"
    assert main([*common, "--repository", "octo-org/app", image]) == 0
    assert main([*common, "--repository", "octo-org/app", "--source-commit", COMMIT, image]) == 2
    assert "--bundle cannot check source-commit" in capsys.readouterr().err
    policy = tmp_path / "policy.yml"
    policy.write_text(f"repository: octo-org/app\nsource-repository: {GIT_REPO}\n")
    assert main([*common, "--policy", str(policy), image]) == 2
    err = capsys.readouterr().err
    assert "--bundle cannot check source-repository" in err and "hint: verify from" in err


# --- F9: verify --from-dir and every requirement flag ---------------------------------------------


def test_verify_from_dir_honours_the_source_flags(tmp_path: Path, minted: Minted) -> None:
    reg = Registry()
    platform = _platform_manifest(reg, tag="v1")
    _sign(reg, minted, platform)
    kit = tmp_path / "kit"
    download_kit(
        reg,  # type: ignore[arg-type]  # the ImageSource protocol is all it reads
        f"{REPO}:v1",
        kit,
        issuer=GITHUB_ISSUER,
        material=TrustMaterial(jwks=minted.jwks),
    )
    common = ["verify", "--no-trust-repo", "--repository", "octo-org/app", "--from-dir", str(kit)]
    image = f"{REPO}@{platform}"
    assert main([*common, image]) == 0
    # No BuildKit provenance in the kit: a source requirement cannot be met (11), never ignored.
    assert main([*common, "--source-commit", OTHER_COMMIT, image]) == 11
    assert main([*common, "--source-repository", GIT_REPO, image]) == 11


def _verify_parser() -> argparse.ArgumentParser:
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    parser = subparsers.choices["verify"]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


#: The groups whose every flag is a requirement or trust material, whichever path verifies.
REQUIREMENT_GROUPS = ("identity policy", "trust material", "what to verify")
#: Flags of those groups that choose the path itself, or mean nothing on one path.
PATH_FLAGS = {"bundle", "from_dir"}
KIT_EXEMPT = {"offline": "a kit is always read with no network: there is nothing to refresh"}


def _requirement_actions() -> list[argparse.Action]:
    parser = _verify_parser()
    return [
        action
        for group in parser._action_groups
        if group.title in REQUIREMENT_GROUPS
        for action in group._group_actions
        if action.dest not in PATH_FLAGS
    ]


def _changed(action: argparse.Action) -> Any:
    """A value of the flag other than its default."""
    if isinstance(action, argparse._StoreTrueAction):
        return True
    if isinstance(action, argparse._StoreFalseAction):
        return False
    value: Any = Path(f"/given/{action.dest}") if action.type is Path else f"given-{action.dest}"
    if action.dest == "expiry_policy":
        value = "12h"
    return [value] if isinstance(action, argparse._AppendAction) else value


class _Built(Exception):  # a capture, raised to stop at the call
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """What each path hands to build_policy and build_verify_options (captured, nothing run)."""
    from opk_sign.verify import keys, kit, options

    calls: dict[str, Any] = {}
    policy = policy_from_document({"repository": "octo-org/app"})
    image_digest = "sha256:" + "cd" * 32

    def build_policy(fields: Any, path: Any = None, *, issuer: Any = None) -> Any:
        calls["policy"] = (dict(fields), path, issuer)
        return policy

    def build(**kwargs: Any) -> Any:
        raise _Built(kwargs)

    class FakeKit:
        issuer_name = GITHUB_ISSUER

        def __init__(self, path: Path) -> None:
            self.path = path

        def __enter__(self) -> FakeKit:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def digests(self) -> set[str]:
            return {image_digest}

        def trust_file(self, name: str) -> Path:
            return self.path / name

        def issuer(self) -> str:
            return str(FakeKit.issuer_name)

    monkeypatch.setattr(options, "build_policy", build_policy)
    monkeypatch.setattr(options, "build_verify_options", build)
    monkeypatch.setattr(options, "trust_installed", lambda: True)
    monkeypatch.setattr(keys, "jwks_from_file", lambda path, issuer: ("jwks", path, issuer))
    monkeypatch.setattr(kit, "KitSource", FakeKit)
    monkeypatch.setattr(
        "opk_sign.pktoken.verify.StaticJWKS", lambda issuer, doc: ("static", issuer)
    )
    calls["image"] = f"{REPO}@{image_digest}"
    calls["kit"] = FakeKit
    yield calls


def _fingerprint(recorded: dict[str, Any], args: argparse.Namespace, path: str) -> str:
    recorded.pop("policy", None)
    with pytest.raises(_Built) as built:
        if path == "registry":
            cli_options.verify_options(args)
        else:
            recorded["kit"].issuer_name = args.issuer  # the kit holds the asked issuer's JWKS
            cli_verify._verify_kit(args, [recorded["image"]])
    return repr((recorded.get("policy"), sorted(built.value.kwargs.items())))


def test_the_requirement_groups_are_found() -> None:
    dests = {action.dest for action in _requirement_actions()}
    assert {"source_repository", "source_commit", "attestation", "repository"} <= dests
    assert {"require_tlog", "platform", "signed_repository", "expiry_policy"} <= dests


@pytest.mark.parametrize("path", ["registry", "from-dir"])
def test_every_requirement_flag_reaches_each_path(recorded: dict[str, Any], path: str) -> None:
    """Enumerated from the parser: a flag added to these groups later is checked too."""
    parser = _verify_parser()
    base = parser.parse_args([recorded["image"]])
    base.from_dir = Path("/kit")
    before = _fingerprint(recorded, base, path)
    dropped = []
    for action in _requirement_actions():
        if path == "from-dir" and action.dest in KIT_EXEMPT:
            continue
        args = argparse.Namespace(**vars(base))
        setattr(args, action.dest, _changed(action))
        if _fingerprint(recorded, args, path) == before:
            dropped.append(action.option_strings[0])
    assert dropped == [], f"{path}: flags that change nothing: {dropped}"


# --- F6: BuildKit attestations next to junk --------------------------------------------------------


def test_junk_opk_sign_attestation_does_not_hide_a_valid_buildkit_one(minted: Minted) -> None:
    reg = Registry()
    platform = _buildkit_image(reg, minted)
    assert verify_image(reg, f"{REPO}:v1", _options(minted, attestations=[V1])).verified
    _sign(reg, minted, platform, artifact_type=OPK_ATTESTATION)  # pushed by anyone: junk
    result = verify_image(reg, f"{REPO}:v1", _options(minted, attestations=[V1]))
    assert result.outcome is Outcome.VERIFIED, result.message
    assert verify_image(reg, f"{REPO}:v1", _options(minted, source_commit=COMMIT)).verified


def test_junk_opk_sign_attestation_alone_is_still_invalid(minted: Minted) -> None:
    reg = Registry()
    platform = _platform_manifest(reg, tag="v1")
    _sign(reg, minted, platform)
    _sign(reg, minted, platform, artifact_type=OPK_ATTESTATION)
    result = verify_image(reg, f"{REPO}:v1", _options(minted, attestations=[V1]))
    assert result.outcome is Outcome.INVALID, result.message


def test_more_buildkit_candidates_than_tried_is_unknown_never_invalid(minted: Minted) -> None:
    reg = Registry()
    platform = _platform_manifest(reg, tag="v1")
    _sign(reg, minted, platform)
    cap = attestations.MAX_CANDIDATES
    assert cap == 16  # the cap stays
    for i in range(cap):  # unsigned junk, listed first
        _attestation_manifest(reg, platform, _provenance(platform, {"junk": i}))
    good = _attestation_manifest(reg, platform, _provenance(platform))
    _sign(reg, minted, good["digest"])  # `sign --attestation-manifests`
    for options in (_options(minted, attestations=[V1]), _options(minted, source_commit=COMMIT)):
        result = verify_image(reg, f"{REPO}:v1", options)
        assert result.outcome is Outcome.REGISTRY_ERROR, result.message
        assert "not tried" in result.message
    # Within the cap, the genuine one is found.
    reg.referrers[platform] = [
        d for d in reg.referrers[platform] if d["digest"] != reg.referrers[platform][1]["digest"]
    ]
    assert verify_image(reg, f"{REPO}:v1", _options(minted, attestations=[V1])).verified


# --- F8: library verify and a plain manifest's platform -------------------------------------------


def _library_result(minted: Minted, architectures: str, platform: str = "linux/amd64") -> Any:
    library = parse_library(
        f"Maintainers: Octo (@octo)\nGitRepo: {GIT_REPO}\n\n"
        f"Tags: v1\nArchitectures: {architectures}\nGitCommit: {COMMIT}\n"
    )
    (plan,) = library.tags()
    reg = Registry()
    digest = _platform_manifest(reg, platform, tag="v1")
    _sign(reg, minted, digest)
    attestation = _attestation_manifest(reg, digest, _provenance(digest))
    _sign(reg, minted, attestation["digest"])
    options = dataclasses.replace(_options(minted), source=sources_of(plan))
    return missing_architectures(plan, verify_image(reg, f"{REPO}:v1", options))


def test_a_plain_manifest_is_the_entry_only_for_its_own_platform(minted: Minted) -> None:
    assert _library_result(minted, "amd64").verified
    assert _library_result(minted, "arm64v8", platform="linux/arm64").verified
    wrong = _library_result(minted, "arm64v8")
    assert wrong.outcome is Outcome.POLICY_MISMATCH, wrong.message
    assert "linux/amd64 is not an architecture" in wrong.message
    both = _library_result(minted, "amd64, arm64v8")
    assert both.outcome is Outcome.POLICY_MISMATCH, both.message
    assert "lacks architectures" in both.message and "linux/arm64" in both.message
