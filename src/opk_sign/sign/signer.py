"""The signer of one signing run: an ephemeral ES256 key and its PK token, making bundles.

Pure logic, no I/O: ``sign.py`` gets the ID token and talks to the registry. One run = one key =
one PK token, used for every signature and attestation of the run (docs/bundle.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from opk_sign._version import __version__
from opk_sign.bundle import (
    ANNOTATION_CREATED,
    ANNOTATION_IDENTITY,
    ANNOTATION_ISSUER,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_REPOSITORY,
    Bundle,
)
from opk_sign.errors import FormatError
from opk_sign.identity import SignerIdentity
from opk_sign.jose import JSONObject
from opk_sign.payloads import (
    INTOTO_PAYLOAD_TYPE,
    SLSA_PROVENANCE_V1,
    Statement,
    Subject,
    github_provenance,
    sign_envelope,
)
from opk_sign.payloads.simplesigning import SimpleSigningPayload
from opk_sign.pktoken import PKToken, UserKey, new_osm

CREATOR: Final = f"opk-sign/{__version__}"


@dataclass(frozen=True)
class Signer:
    """Signs with the run's ephemeral key; the key never leaves this object's memory."""

    user_key: UserKey = field(repr=False)
    pk_token: PKToken = field(repr=False)
    claims: Mapping[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.user_key.private_key, ec.EllipticCurvePrivateKey):
            raise FormatError("the signing key must be ES256 (ECDSA P-256)")
        cic = self.pk_token.cic_claims()
        if cic.public_key != self.user_key.public_key:
            raise FormatError("the PK token does not commit to this signing key")

    @property
    def identity(self) -> SignerIdentity:
        return SignerIdentity.from_claims(self.claims)

    @property
    def issuer(self) -> str:
        return self.identity.issuer

    def identity_hints(self) -> dict[str, str]:
        """What goes into a signature payload's ``optional``: who signed, from which run."""
        return {"creator": CREATOR, **self.identity.to_dict()}

    def annotations(self, created: datetime, predicate_type: str | None = None) -> dict[str, str]:
        """The unsigned hints on an artifact manifest (filtering without fetching blobs)."""
        identity = self.identity
        out = {
            ANNOTATION_CREATED: _rfc3339(created),
            ANNOTATION_IDENTITY: identity.principal,
            ANNOTATION_ISSUER: identity.issuer,
        }
        if identity.repository:
            out[ANNOTATION_REPOSITORY] = identity.repository
        if predicate_type is not None:
            out[ANNOTATION_PREDICATE_TYPE] = predicate_type
        return out

    def signature(self, docker_reference: str, manifest_digest: str) -> Bundle:
        """A signature bundle: an OSM over the simple-signing payload naming this digest."""
        payload = SimpleSigningPayload.build(
            docker_reference, manifest_digest, self.identity_hints()
        )
        return Bundle(self.pk_token, osm=new_osm(self.pk_token, self.user_key, payload.raw))

    def attestation(
        self,
        subject_name: str,
        manifest_digest: str,
        predicate_type: str,
        predicate: Mapping[str, Any],
    ) -> Bundle:
        """An attestation bundle: a DSSE envelope around an in-toto Statement v1 whose subject is
        the manifest, signed (ECDSA P-256, DER, over the PAE) with the run's key."""
        statement = Statement.build(
            [Subject.for_oci_digest(subject_name, manifest_digest)], predicate_type, predicate
        )
        key = self.user_key.private_key
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # checked in __post_init__
        envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, statement.raw, key, self.pk_token.hash())
        return Bundle(self.pk_token, dsse_envelope=envelope)

    def provenance(self, server_url: str) -> tuple[str, JSONObject]:
        """The SLSA provenance v1 predicate of this run (from the verified token's claims)."""
        return SLSA_PROVENANCE_V1, github_provenance(self.claims, server_url=server_url)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
