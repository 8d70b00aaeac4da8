"""Attestations: DSSE envelopes around in-toto Statements, SLSA provenance predicates.

Pure logic, no I/O.
"""

from opk_sign.payloads.dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    EnvelopeSignature,
    pae,
    sign_envelope,
    verify_envelope,
)
from opk_sign.payloads.intoto import STATEMENT_TYPE, Statement, Subject
from opk_sign.payloads.provenance import (
    GITHUB_WORKFLOW_BUILD_TYPE,
    SLSA_PROVENANCE_V1,
    github_provenance,
)

__all__ = [
    "GITHUB_WORKFLOW_BUILD_TYPE",
    "INTOTO_PAYLOAD_TYPE",
    "SLSA_PROVENANCE_V1",
    "STATEMENT_TYPE",
    "Envelope",
    "EnvelopeSignature",
    "Statement",
    "Subject",
    "github_provenance",
    "pae",
    "sign_envelope",
    "verify_envelope",
]
