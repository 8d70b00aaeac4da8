"""The X.509 certificate a log entry names as its verifier: self-signed by the run's ephemeral key
and carrying the PK token, as openpubkey's ``cert`` package does (the PK token's JSON in the
Subject Key Identifier), with the issuer and the GitHub claims also in Fulcio's extensions
(1.3.6.1.4.1.57264.1.8 to .22, DER UTF8Strings) so that Sigstore's identity monitors can match it.

One certificate per logged bundle: it also names what the bundle signs, ``<repository>@<digest>``
and the kind (``signature`` or the predicate type), as JSON in the X.520 ``description``
attribute (2.5.4.13) of its subject name, so that a monitor reading the log can say which image
was signed; the key that signs the bundle signs that statement too. (An extension would need an
OID arc of our own; a UUID arc, 2.25, has components Go's X.509 parser, and so Rekor, refuses.)

Rekor checks no chain: anyone can log a certificate claiming anything. What makes an entry
meaningful is the PK token inside, which a verifier or the monitor checks (GQ256 under the OP's
key, the CIC committing to the certificate's key); without that check an entry is junk.
Pure logic, no I/O.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from opk_sign.errors import FormatError, TransparencyError
from opk_sign.jose import parse_json
from opk_sign.pktoken import PKToken

FULCIO_OID: Final = "1.3.6.1.4.1.57264.1"
#: The Fulcio (v2) extensions set from GitHub ID token claims: OID suffix -> how to get it.
ISSUER_V2: Final = 8
_GITHUB_EXTENSIONS: Final = {
    9: "build-signer-uri",
    10: "job_workflow_sha",
    11: "runner_environment",
    12: "source-repository-uri",
    13: "sha",
    14: "ref",
    15: "repository_id",
    16: "source-repository-owner-uri",
    17: "repository_owner_id",
    18: "build-config-uri",
    19: "workflow_sha",
    20: "event_name",
    21: "run-invocation-uri",
    22: "repository_visibility",
}
#: The subject name attribute holding ``{"kind": …, "subject": …}`` (JSON): X.520 description.
DESCRIPTION_OID: Final = x509.ObjectIdentifier("2.5.4.13")
MAX_CERTIFICATE_BYTES: Final = 32 * 1024
#: The description is ``{"kind": …, "subject": …}``: a repository, a digest, a predicate type.
MAX_DESCRIPTION_BYTES: Final = 4096
_DIGITAL_SIGNATURE: Final = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
#: How long the certificate says it is valid: the PK token's default window (24 hours).
VALIDITY: Final = timedelta(hours=24)


def _utf8_der(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 0x80:
        return bytes([0x0C, len(data)]) + data
    length = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(length)]) + length + data


def _utf8_from_der(der: bytes) -> str | None:
    if len(der) < 2 or der[0] != 0x0C:
        return None
    length, start = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    if start + length != len(der):
        return None
    try:
        return der[start:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def fulcio_claims(claims: Mapping[str, Any], server_url: str) -> dict[int, str]:
    """The Fulcio extension values for GitHub Actions ID token claims (missing ones left out)."""
    server = server_url.rstrip("/")

    def claim(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and value else None

    derived = {
        "build-signer-uri": f"{server}/{claims['job_workflow_ref']}"
        if claim("job_workflow_ref")
        else None,
        "source-repository-uri": f"{server}/{claims['repository']}"
        if claim("repository")
        else None,
        "source-repository-owner-uri": f"{server}/{claims['repository_owner']}"
        if claim("repository_owner")
        else None,
        "build-config-uri": f"{server}/{claims['workflow_ref']}" if claim("workflow_ref") else None,
        "run-invocation-uri": (
            f"{server}/{claims['repository']}/actions/runs/{claims['run_id']}"
            f"/attempts/{claims.get('run_attempt') or '1'}"
        )
        if claim("repository") and claim("run_id")
        else None,
    }
    out: dict[int, str] = {}
    issuer = claim("iss")
    if issuer:
        out[ISSUER_V2] = issuer
    for number, source in _GITHUB_EXTENSIONS.items():
        value = derived[source] if source in derived else claim(source)
        if value is not None:
            out[number] = value
    return out


def build_certificate(
    pk_token: PKToken,
    key: ec.EllipticCurvePrivateKey,
    claims: Mapping[str, Any],
    *,
    server_url: str = "https://github.com",
    now: datetime | None = None,
    subject: SignedSubject | None = None,
) -> bytes:
    """DER certificate for ``key`` (the key the PK token's CIC commits to), self-signed; with
    ``subject``, naming what the logged bundle signs."""
    if pk_token.cic_claims().public_key != key.public_key():
        raise FormatError("the PK token does not commit to this certificate's key")
    moment = now or datetime.now(UTC)
    common_name = str(claims.get("sub") or "opk-sign")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]
    if subject is not None:
        attributes.append(x509.NameAttribute(DESCRIPTION_OID, subject.to_json()))
    name = x509.Name(attributes)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(120) | 1)
        .not_valid_before(moment - timedelta(minutes=1))
        .not_valid_after(moment + VALIDITY)
        .add_extension(_DIGITAL_SIGNATURE, True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier(pk_token.to_json()), False)
    )
    values = fulcio_claims(claims, server_url)
    if 9 in values:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(values[9])]), True
        )
    for number, value in sorted(values.items()):
        oid = x509.ObjectIdentifier(f"{FULCIO_OID}.{number}")
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, _utf8_der(value)), False)
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class SignedSubject:
    """What a logged bundle signs: ``<repository>@<digest>`` and ``signature`` or a predicate
    type."""

    reference: str
    kind: str

    def to_json(self) -> str:
        return json.dumps({"subject": self.reference, "kind": self.kind}, sort_keys=True)

    @property
    def digest(self) -> str:
        return self.reference.rpartition("@")[2]

    @property
    def repository(self) -> str:
        return self.reference.rpartition("@")[0]

    @classmethod
    def from_json(cls, text: str) -> SignedSubject | None:
        """The subject a description names; None when it names none (anyone can log any
        certificate: a description nested thousands deep or megabytes long is just not one)."""
        try:
            data = parse_json(text, "certificate description", max_bytes=MAX_DESCRIPTION_BYTES)
        except FormatError:
            return None
        if not isinstance(data, dict):
            return None
        reference, kind = data.get("subject"), data.get("kind")
        if not isinstance(reference, str) or not isinstance(kind, str) or "@" not in reference:
            return None
        return cls(reference, kind)


@dataclass(frozen=True)
class TokenCertificate:
    """A parsed certificate: the PK token it carries (not yet verified) and its Fulcio claims."""

    pk_token: PKToken
    public_key: ec.EllipticCurvePublicKey = field(repr=False)
    fulcio: Mapping[int, str] = field(default_factory=dict)
    #: What the bundle logged with this certificate signs (None: not said).
    subject: SignedSubject | None = None


def parse_certificate(der: bytes) -> TokenCertificate:
    """The PK token of an opk-sign certificate; self-signature, and the CIC committing to the
    certificate's key, checked. The PK token itself is the caller's to verify."""
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise TransparencyError(f"certificate larger than {MAX_CERTIFICATE_BYTES} bytes")
    try:
        certificate = x509.load_der_x509_certificate(der)
        public = certificate.public_key()
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except (ValueError, UnsupportedAlgorithm, x509.ExtensionNotFound):
        raise TransparencyError("not an opk-sign certificate (no PK token in it)") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
        public.curve, ec.SECP256R1
    ):
        raise TransparencyError("certificate key is not ECDSA P-256")
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise TransparencyError("certificate is not self-signed by its key") from None
    try:
        # Parsed lazily by cryptography: a subject or an extension it cannot decode (invalid
        # UTF-8 in a UTF8String, say) raises here, not at load time.
        described = certificate.subject.get_attributes_for_oid(DESCRIPTION_OID)
        extensions = list(certificate.extensions)
    except ValueError:
        raise TransparencyError("certificate: its subject or extensions do not parse") from None
    try:
        pk_token = PKToken.from_json(ski.digest)
        committed = pk_token.cic_claims().public_key
    except FormatError as err:
        raise TransparencyError(f"certificate's PK token: {err.message}") from None
    if committed != public:
        raise TransparencyError("certificate's key is not the one its PK token commits to")
    fulcio: dict[int, str] = {}
    text = described[0].value if len(described) == 1 else None
    subject = SignedSubject.from_json(text) if isinstance(text, str) else None
    for extension in extensions:
        dotted = extension.oid.dotted_string
        if dotted.startswith(FULCIO_OID + ".") and isinstance(
            extension.value, x509.UnrecognizedExtension
        ):
            number = dotted[len(FULCIO_OID) + 1 :]
            text = _utf8_from_der(extension.value.value)
            if number.isdigit() and text is not None:
                fulcio[int(number)] = text
    return TokenCertificate(pk_token, public, fulcio, subject)
