"""The simple-signing payload an opk-sign signature (OSM) signs (docs/bundle.md).

    {"critical": {"identity": {"docker-reference": "<registry/repo>"},
                  "image": {"docker-manifest-digest": "sha256:…"},
                  "type": "opk-sign container image signature"},
     "optional": {…identity hints…}}

``critical`` is what a verifier must check (this repository, this digest); ``optional`` carries
unsigned-in-spirit hints (who signed, from which run) that the PK token beside it backs. Written as
Go-canonical JSON (sorted, compact); parsed strictly, keeping the bytes received. Pure logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opk_sign.errors import FormatError, UsageError
from opk_sign.jose import go_json, parse_json_object
from opk_sign.oci.digest import split_digest
from opk_sign.oci.reference import Reference

SIGNATURE_TYPE: Final = "opk-sign container image signature"


def _is_repository(name: Any) -> bool:
    """A name as signing writes it (``Reference.name``): normalised, no tag, no digest. A signed
    payload is attacker-written text that reaches messages; nothing else is a repository."""
    if not isinstance(name, str) or not name:
        return False
    try:
        reference = Reference.parse(name, default_tag=None)
    except UsageError:
        return False
    return reference.tag is None and reference.digest is None and reference.name == name


@dataclass(frozen=True)
class SimpleSigningPayload:
    docker_reference: str
    manifest_digest: str
    optional: Mapping[str, Any] = field(default_factory=dict)
    raw: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _is_repository(self.docker_reference):
            shown = repr(self.docker_reference)
            raise FormatError(
                "simple-signing: docker-reference must be a normalised registry/repository, "
                f"got {shown if len(shown) <= 300 else shown[:300] + '...'}"
            )
        try:
            split_digest(self.manifest_digest)
        except UsageError as err:
            raise FormatError(f"simple-signing: {err}") from None

    @classmethod
    def build(
        cls, docker_reference: str, manifest_digest: str, optional: Mapping[str, Any] | None = None
    ) -> SimpleSigningPayload:
        payload = cls(docker_reference, manifest_digest, dict(optional or {}))
        doc = {
            "critical": {
                "identity": {"docker-reference": payload.docker_reference},
                "image": {"docker-manifest-digest": payload.manifest_digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": dict(payload.optional),
        }
        raw = go_json(doc)
        return cls(payload.docker_reference, payload.manifest_digest, payload.optional, raw)

    @classmethod
    def parse(cls, data: bytes) -> SimpleSigningPayload:
        doc = parse_json_object(data, "simple-signing payload")
        critical = doc.get("critical")
        if not isinstance(critical, dict):
            raise FormatError("simple-signing: 'critical' must be a JSON object")
        if critical.get("type") != SIGNATURE_TYPE:
            raise FormatError(
                f"simple-signing: critical.type must be {SIGNATURE_TYPE!r}, "
                f"got {critical.get('type')!r}"
            )
        identity, image = critical.get("identity"), critical.get("image")
        reference = identity.get("docker-reference") if isinstance(identity, dict) else None
        digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
        if not isinstance(reference, str) or not isinstance(digest, str):
            raise FormatError(
                "simple-signing: critical needs identity.docker-reference and "
                "image.docker-manifest-digest strings"
            )
        optional = doc.get("optional")
        optional = {} if optional is None else optional
        if not isinstance(optional, dict):
            raise FormatError("simple-signing: 'optional' must be a JSON object")
        return cls(reference, digest, optional, bytes(data))
