"""The one error hierarchy of opk-sign.

Every error a user can see says what was wrong (``str(err)``) and, where there is one, what to do
about it (``err.hint``). Each class carries the CLI exit code of its outcome so that the CLI, the
actions and the library agree on one contract:

    0 verified · 1 other failure · 2 usage · 10 no signatures · 11 policy mismatch
    12 invalid signatures · 13 registry or network · 14 trust material · 15 image not found
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_SIGNATURES = 10
EXIT_POLICY_MISMATCH = 11
EXIT_INVALID_SIGNATURE = 12
EXIT_REGISTRY = 13
EXIT_TRUST = 14
#: The image (name or tag) does not exist: its own outcome, so a typo is never retried as a 13.
EXIT_NOT_FOUND = 15


class OpkSignError(Exception):
    """Base of every error opk-sign raises on purpose."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def diagnostics(self) -> str:
        """The message and, when known, the remedy, for people."""
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(OpkSignError):
    """The command line or an input was wrong; nothing was attempted."""

    exit_code = EXIT_USAGE


# --- formats -------------------------------------------------------------------------------------


class FormatError(OpkSignError):
    """Bytes that do not parse as the format they claim (JWS, JWK, PK token, bundle, ...)."""

    exit_code = EXIT_INVALID_SIGNATURE


# --- verification --------------------------------------------------------------------------------


class VerificationError(OpkSignError):
    """A signature, token or proof did not verify."""

    exit_code = EXIT_INVALID_SIGNATURE


class SignatureError(VerificationError):
    """A cryptographic signature (CIC, OSM, DSSE) does not verify with the key it names."""


class GQProofError(VerificationError):
    """The GQ256 proof standing in for the OP's RSA signature is invalid."""


class CICError(VerificationError):
    """The client instance claims (CIC) are missing, malformed or inconsistent."""


class CommitmentError(VerificationError):
    """The commitment in the ID token does not match the CIC (token stolen or replayed)."""


class IssuerError(VerificationError):
    """The token's issuer is not trusted, or its key is unknown."""


class ExpiredTokenError(VerificationError):
    """The PK token is outside the validity window of the expiry policy."""


class OSMError(VerificationError):
    """An OpenPubkey signed message is malformed or not bound to this PK token."""


class PayloadMismatchError(VerificationError):
    """A valid signature over a payload that names another image, digest or subject."""


class TimestampError(VerificationError):
    """An RFC 3161 timestamp is invalid, untrusted, or outside the token's window."""


class TransparencyError(VerificationError):
    """A transparency log entry does not prove this bundle was logged: wrong body, bad inclusion
    proof, checkpoint not signed by a trusted log key, witness quorum not met, or a required
    entry missing (docs/transparency.md)."""


class PolicyError(VerificationError):
    """A valid signature whose identity does not satisfy the required policy."""

    exit_code = EXIT_POLICY_MISMATCH


# --- I/O -----------------------------------------------------------------------------------------


class NetworkError(OpkSignError):
    """A remote service could not be asked; the outcome of the operation is unknown."""

    exit_code = EXIT_REGISTRY


class RegistryError(NetworkError):
    """The OCI registry refused or failed a request."""


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached or kept failing after retries."""


class RegistryAuthError(RegistryError):
    """The registry refused our credentials (or we had none)."""


class NotFoundError(RegistryError):
    """The registry answered that a manifest, blob or repository does not exist."""


class ImageNotFoundError(NotFoundError):
    """The image asked for does not exist (a missing tag, digest or repository): exit 15."""

    exit_code = EXIT_NOT_FOUND


class TrustError(OpkSignError):
    """Trust material (JWKS, TUF repository, TSA certificates) is unavailable or invalid."""

    exit_code = EXIT_TRUST


class TokenRequestError(OpkSignError):
    """The CI provider did not give us an ID token."""


class SigningError(OpkSignError):
    """A signing run failed; the message says which manifests were signed and which not."""


def printable(text: str) -> str:
    """``text`` for a terminal or a log: control characters (escape sequences, carriage
    returns, bidirectional overrides) shown as ``\\x..``/``\\u....`` escapes, line breaks and
    tabs kept. Messages carry text registries, kits and signed payloads wrote."""
    return _CONTROL.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
