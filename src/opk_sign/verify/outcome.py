"""What verification decided: an outcome per bundle, manifest and image, with its exit code
(docs/adr/0002-exit-code-contract.md), and the documents reports are made from. Pure logic."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_NO_SIGNATURES,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_POLICY_MISMATCH,
    EXIT_REGISTRY,
    EXIT_TRUST,
    EXIT_USAGE,
    FormatError,
    ImageNotFoundError,
    NetworkError,
    OpkSignError,
    PolicyError,
    TrustError,
    UsageError,
    VerificationError,
)
from opk_sign.identity import SHOWN_CLAIMS
from opk_sign.pktoken.verify import VerifiedPKToken


class Outcome(enum.Enum):
    """An image's (or manifest's) verification outcome: its exit code and its label. Two outcomes
    may share a code (``missing-attestation`` is a kind of policy mismatch, 11) but never a
    label."""

    VERIFIED = (EXIT_OK, "verified")
    USAGE_ERROR = (EXIT_USAGE, "usage-error")
    NO_SIGNATURES = (EXIT_NO_SIGNATURES, "no-signatures")
    POLICY_MISMATCH = (EXIT_POLICY_MISMATCH, "policy-mismatch")
    #: A valid signature, but no attestation of a required predicate type at all.
    MISSING_ATTESTATION = (EXIT_POLICY_MISMATCH, "missing-attestation")
    INVALID = (EXIT_INVALID_SIGNATURE, "invalid")
    REGISTRY_ERROR = (EXIT_REGISTRY, "registry-error")
    TRUST_ERROR = (EXIT_TRUST, "trust-error")
    NOT_FOUND = (EXIT_NOT_FOUND, "not-found")

    @property
    def exit_code(self) -> int:
        return int(self.value[0])

    @property
    def label(self) -> str:
        return str(self.value[1])

    @classmethod
    def worst(cls, outcomes: Iterable[Outcome]) -> Outcome:
        """The outcome that decides for several: exit codes rank by number (15 worst); of two
        with one code, the one declared later (missing-attestation over policy-mismatch)."""
        order = list(cls)
        return max(outcomes, key=lambda o: (o.exit_code, order.index(o)), default=cls.VERIFIED)

    @classmethod
    def of_error(cls, err: OpkSignError) -> Outcome:
        if isinstance(err, PolicyError):
            return cls.POLICY_MISMATCH
        if isinstance(err, ImageNotFoundError):
            return cls.NOT_FOUND
        if isinstance(err, NetworkError):
            return cls.REGISTRY_ERROR
        if isinstance(err, TrustError):
            return cls.TRUST_ERROR
        if isinstance(err, UsageError):
            return cls.USAGE_ERROR
        if isinstance(err, VerificationError | FormatError):
            return cls.INVALID
        return cls.INVALID


@dataclass(frozen=True)
class BundleCheck:
    """One bundle tried against one manifest, and what became of it."""

    referrer: str
    kind: str  # "signature" | "attestation"
    outcome: Outcome
    error: str | None = None
    error_type: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    predicate_type: str | None = None
    #: The remedy the error suggests, if any (e.g. ``--signed-repository`` for a copy).
    hint: str | None = None
    #: For a BuildKit in-index attestation: the attestation manifest, the layer, what covers it
    #: (``coveredBy``, ``signature``) and, for provenance, the ``source`` it names.
    buildkit: dict[str, Any] | None = None
    #: The transparency log entries that were verified with the bundle (origin, index, tree
    #: size, witnesses), when the verification checked them (docs/transparency.md).
    transparency_log: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "referrer": self.referrer,
            "kind": self.kind,
            "outcome": self.outcome.label,
        }
        if self.predicate_type:
            out["predicateType"] = self.predicate_type
        if self.error is not None:
            out["error"] = self.error
            out["errorType"] = self.error_type
            if self.hint:
                out["hint"] = self.hint
        if self.claims:
            out["identity"] = self.claims
        if self.buildkit is not None:
            out["buildkit"] = self.buildkit
        if self.transparency_log:
            out["transparencyLog"] = list(self.transparency_log)
        return out


@dataclass(frozen=True)
class ManifestResult:
    digest: str
    media_type: str
    platform: str | None
    outcome: Outcome
    message: str
    checks: tuple[BundleCheck, ...] = ()

    @property
    def identity(self) -> dict[str, Any]:
        for check in self.checks:
            if check.kind == "signature" and check.outcome is Outcome.VERIFIED:
                return check.claims
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "mediaType": self.media_type,
            "platform": self.platform,
            "outcome": self.outcome.label,
            "message": self.message,
            "bundles": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class ImageResult:
    """The verdict on one image, as given on the command line."""

    image: str
    outcome: Outcome
    message: str
    reference: str | None = None
    digest: str | None = None
    manifests: tuple[ManifestResult, ...] = ()
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        return self.outcome is Outcome.VERIFIED

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    @property
    def identity(self) -> dict[str, Any]:
        return self.manifests[0].identity if self.manifests else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "reference": self.reference,
            "digest": self.digest,
            "verified": self.verified,
            "outcome": self.outcome.label,
            "exitCode": self.exit_code,
            "message": self.message,
            "identity": self.identity,
            "manifests": [m.to_dict() for m in self.manifests],
        }


def identity_of(verified: VerifiedPKToken) -> dict[str, Any]:
    return {k: verified.claims[k] for k in SHOWN_CLAIMS if k in verified.claims}


def tally(results: Iterable[ImageResult]) -> str:
    done = list(results)
    verified = sum(r.verified for r in done)
    return f"{verified} of {len(done)} images verified"


def worst_exit_code(results: Iterable[ImageResult]) -> int:
    return Outcome.worst(r.outcome for r in results).exit_code


# --- text ---------------------------------------------------------------------------------------


def format_result(result: ImageResult) -> str:
    mark = "OK  " if result.verified else "FAIL"
    name = f"{result.reference}@{result.digest}" if result.digest else result.image
    lines = [f"{mark} {name}: {result.outcome.label} (exit {result.exit_code})"]
    if result.verified:
        identity = result.identity
        for key in ("repository", "job_workflow_ref", "ref", "sha", "event_name", "iss"):
            if key in identity:
                lines.append(f"     {key + ':':<18}{identity[key]}")
        for manifest in result.manifests:
            lines.append(f"     {manifest.platform or 'manifest':<18}{manifest.digest}")
            for check in manifest.checks:  # BuildKit provenance: where it was built from
                source = (check.buildkit or {}).get("source")
                if isinstance(source, dict) and check.outcome is Outcome.VERIFIED:
                    lines.append(
                        f"     {'  source:':<18}{source.get('repository')} at "
                        f"{source.get('commit')} ({source.get('from')})"
                    )
                if check.outcome is Outcome.VERIFIED:
                    lines.extend(
                        f"     {'  logged:':<18}{_logged(check.kind, entry)}"
                        for entry in check.transparency_log
                    )
        return "\n".join(lines)
    if not result.manifests:
        lines.append(_indent(result.message, 5))
    for manifest in result.manifests:
        if manifest.outcome.exit_code != 0:
            lines.append(_indent(manifest.message, 5))
    return "\n".join(lines)


def _logged(kind: str, entry: dict[str, Any]) -> str:
    witnesses = entry.get("witnesses") or []
    by = f", cosigned by {', '.join(witnesses)}" if witnesses else ""
    return (
        f"{kind} in {entry.get('origin')}, entry {entry.get('logIndex')} of "
        f"{entry.get('treeSize')}{by}"
    )


def _indent(text: str, width: int) -> str:
    return "\n".join(" " * width + line for line in text.splitlines())
