"""The opk-sign bundle: one signature or attestation with everything needed to verify it offline.

A bundle is a JSON document (docs/bundle.md, docs/bundle.schema.json)::

    {"mediaType": "application/vnd.dev.opk-sign.bundle.v1+json",
     "pkToken": {"payload": …, "signatures": [OP, CIC]},
     "osm": "<compact JWS>"            | "dsseEnvelope": {"payload", "payloadType", "signatures"},
     "timestamps": [{"rfc3161": "<base64 DER TimeStampToken>"}],       (optional)
     "tlogEntries": [{…}]}                                             (optional)

Each bundle is stored as the one layer of an OCI 1.1 artifact manifest whose ``subject`` is the
signed manifest. Models check themselves on construction; members this version does not know are
kept, so reading and writing a bundle changes nothing. Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opk_sign.errors import FormatError
from opk_sign.jose import CompactJWS, JSONObject, parse_json_object
from opk_sign.oci.limits import MAX_BUNDLE_BYTES
from opk_sign.payloads.dsse import Envelope
from opk_sign.pktoken import PKToken

BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.opk-sign.bundle.v1+json"
#: ``artifactType`` of the artifact manifest holding a signature bundle (content: ``osm``).
SIGNATURE_ARTIFACT_TYPE: Final = "application/vnd.dev.opk-sign.signature.v1+json"
#: ``artifactType`` of the artifact manifest holding an attestation bundle (``dsseEnvelope``).
ATTESTATION_ARTIFACT_TYPE: Final = "application/vnd.dev.opk-sign.attestation.v1+json"

#: Unsigned hints on the artifact manifest, so verifiers can filter without fetching blobs.
ANNOTATION_PREDICATE_TYPE: Final = "dev.opk-sign.predicate-type"
ANNOTATION_IDENTITY: Final = "dev.opk-sign.identity"
ANNOTATION_REPOSITORY: Final = "dev.opk-sign.repository"
ANNOTATION_ISSUER: Final = "dev.opk-sign.issuer"
ANNOTATION_CREATED: Final = "org.opencontainers.image.created"

#: A bundle is a few KiB (the PK token's GQ proof is 5.5 KiB); refuse anything absurd.
MAX_TIMESTAMPS: Final = 16
MAX_TLOG_ENTRIES: Final = 16
#: An RFC 3161 TimeStampToken is a few KiB with its certificates.
MAX_TIMESTAMP_BYTES: Final = 64 * 1024

_KNOWN: Final = frozenset(
    {"mediaType", "pkToken", "osm", "dsseEnvelope", "timestamps", "tlogEntries"}
)


@dataclass(frozen=True)
class Timestamp:
    """An RFC 3161 TimeStampToken (DER) over the SHA-256 of the content's signature bytes."""

    rfc3161: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.rfc3161:
            raise FormatError("bundle timestamp: empty RFC 3161 token")
        if len(self.rfc3161) > MAX_TIMESTAMP_BYTES:
            raise FormatError(f"bundle timestamp: larger than {MAX_TIMESTAMP_BYTES} bytes")
        if self.rfc3161[0] != 0x30:  # a DER SEQUENCE
            raise FormatError("bundle timestamp: not a DER-encoded RFC 3161 token")

    @classmethod
    def from_dict(cls, data: Any) -> Timestamp:
        if not isinstance(data, Mapping) or set(data) != {"rfc3161"}:
            raise FormatError('bundle timestamp: expected {"rfc3161": "<base64 DER>"}')
        text = data["rfc3161"]
        if not isinstance(text, str):
            raise FormatError("bundle timestamp: rfc3161 must be a base64 string")
        try:
            der = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise FormatError("bundle timestamp: rfc3161 is not standard base64") from None
        if base64.b64encode(der).decode("ascii") != text:
            raise FormatError("bundle timestamp: rfc3161 is non-canonical base64")
        return cls(der)

    def to_dict(self) -> JSONObject:
        return {"rfc3161": base64.b64encode(self.rfc3161).decode("ascii")}


@dataclass(frozen=True)
class Bundle:
    """One opk-sign bundle: a PK token and exactly one content, ``osm`` or ``dsse_envelope``."""

    pk_token: PKToken
    osm: str | None = None
    dsse_envelope: Envelope | None = None
    timestamps: tuple[Timestamp, ...] = ()
    tlog_entries: tuple[JSONObject, ...] = ()
    #: Members this version does not know, kept for byte-faithful round trips.
    unrecognized: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if (self.osm is None) == (self.dsse_envelope is None):
            raise FormatError("bundle: needs exactly one content, osm or dsseEnvelope")
        if self.osm is not None:
            header = CompactJWS.parse(self.osm, "bundle osm").header("bundle osm")
            if header.get("typ") != "osm":
                raise FormatError(f"bundle osm: typ must be 'osm', got {header.get('typ')!r}")
        if len(self.timestamps) > MAX_TIMESTAMPS:
            raise FormatError(f"bundle: more than {MAX_TIMESTAMPS} timestamps")
        if len(self.tlog_entries) > MAX_TLOG_ENTRIES:
            raise FormatError(f"bundle: more than {MAX_TLOG_ENTRIES} tlogEntries")
        if not all(isinstance(entry, dict) for entry in self.tlog_entries):
            raise FormatError("bundle: each tlogEntries item must be a JSON object")
        clash = _KNOWN & set(self.unrecognized)
        if clash:
            raise FormatError(f"bundle: unrecognized members clash with {sorted(clash)}")

    @property
    def is_signature(self) -> bool:
        return self.osm is not None

    @property
    def artifact_type(self) -> str:
        return SIGNATURE_ARTIFACT_TYPE if self.is_signature else ATTESTATION_ARTIFACT_TYPE

    def signature_bytes(self) -> bytes:
        """What a timestamp covers (its imprint is their SHA-256): the OSM's decoded signature
        segment, or the DSSE envelope's signature (a timestamped envelope has exactly one)."""
        if self.osm is not None:
            return CompactJWS.parse(self.osm, "bundle osm").signature
        assert self.dsse_envelope is not None  # exactly one content, checked on construction
        if len(self.dsse_envelope.signatures) != 1:
            raise FormatError(
                "bundle: a timestamped DSSE envelope must carry exactly one signature, "
                f"this one has {len(self.dsse_envelope.signatures)}"
            )
        return self.dsse_envelope.signatures[0].sig

    # --- dict and bytes -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> Bundle:
        if not isinstance(data, Mapping):
            raise FormatError("bundle: expected a JSON object")
        media_type = data.get("mediaType")
        if media_type != BUNDLE_MEDIA_TYPE:
            raise FormatError(
                f"bundle: mediaType must be {BUNDLE_MEDIA_TYPE!r}, got {media_type!r}"
            )
        raw_token = data.get("pkToken")
        if not isinstance(raw_token, Mapping):
            raise FormatError("bundle: pkToken must be a JSON object (a JWS JSON serialization)")
        pk_token = PKToken.from_json(json.dumps(raw_token))
        osm = data.get("osm")
        if osm is not None and not isinstance(osm, str):
            raise FormatError("bundle: osm must be a compact JWS string")
        raw_envelope = data.get("dsseEnvelope")
        envelope = Envelope.from_dict(raw_envelope) if raw_envelope is not None else None
        timestamps = data.get("timestamps", [])
        tlog = data.get("tlogEntries", [])
        if not isinstance(timestamps, list) or not isinstance(tlog, list):
            raise FormatError("bundle: timestamps and tlogEntries must be lists")
        if len(timestamps) > MAX_TIMESTAMPS:
            raise FormatError(f"bundle: more than {MAX_TIMESTAMPS} timestamps")
        return cls(
            pk_token=pk_token,
            osm=osm,
            dsse_envelope=envelope,
            timestamps=tuple(Timestamp.from_dict(t) for t in timestamps),
            tlog_entries=tuple(tlog),
            unrecognized={k: v for k, v in data.items() if k not in _KNOWN},
        )

    def to_dict(self) -> JSONObject:
        out: JSONObject = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "pkToken": json.loads(self.pk_token.to_json()),
        }
        if self.osm is not None:
            out["osm"] = self.osm
        if self.dsse_envelope is not None:
            out["dsseEnvelope"] = self.dsse_envelope.to_dict()
        if self.timestamps:
            out["timestamps"] = [t.to_dict() for t in self.timestamps]
        if self.tlog_entries:
            out["tlogEntries"] = [dict(e) for e in self.tlog_entries]
        out.update(self.unrecognized)
        return out

    @classmethod
    def from_json(cls, data: bytes | str) -> Bundle:
        if len(data) > MAX_BUNDLE_BYTES:
            raise FormatError(f"bundle: larger than {MAX_BUNDLE_BYTES} bytes")
        return cls.from_dict(parse_json_object(data, "bundle"))

    def to_json(self) -> bytes:
        """Compact JSON: the bytes stored as the artifact's layer."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()
