"""in-toto Statement v1: the attestation layer inside a DSSE envelope.

Spec: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md. A statement binds a
predicate (provenance, an SBOM, a scan result) to subjects named by digest; ours name the signed
manifest. Parsing keeps the bytes it was given (they are what the envelope signed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opk_sign.errors import FormatError
from opk_sign.jose import JSONObject, parse_json_object

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
#: in-toto digest sets use lowercase algorithm names and hex values.
_HEX: Final = re.compile(r"[0-9a-f]+")
_DIGEST_LENGTHS: Final = {"sha256": 64, "sha512": 128}
MAX_SUBJECTS: Final = 1024


@dataclass(frozen=True)
class Subject:
    """An artifact the statement is about: a name and its digest set."""

    name: str
    digest: Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise FormatError("in-toto subject: name must be a string")
        if not self.digest:
            raise FormatError(f"in-toto subject {self.name!r}: empty digest set")
        for algorithm, value in self.digest.items():
            expected = _DIGEST_LENGTHS.get(algorithm)
            if not isinstance(value, str) or not _HEX.fullmatch(value):
                raise FormatError(f"in-toto subject {self.name!r}: {algorithm} is not lower hex")
            if expected is not None and len(value) != expected:
                raise FormatError(
                    f"in-toto subject {self.name!r}: {algorithm} must be {expected} hex digits"
                )

    @classmethod
    def for_oci_digest(cls, name: str, digest: str) -> Subject:
        """A subject for an OCI content digest ``sha256:<hex>``."""
        algorithm, _, value = digest.partition(":")
        return cls(name, {algorithm: value})

    def to_dict(self) -> JSONObject:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1. ``raw`` holds the exact bytes parsed or produced."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: JSONObject = field(repr=False)
    raw: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.subjects) <= MAX_SUBJECTS:
            raise FormatError(f"in-toto statement: needs 1 to {MAX_SUBJECTS} subjects")
        if not isinstance(self.predicate_type, str) or not self.predicate_type:
            raise FormatError("in-toto statement: predicateType must be a non-empty URI")
        if not isinstance(self.predicate, dict):
            raise FormatError("in-toto statement: predicate must be a JSON object")

    @classmethod
    def build(
        cls, subjects: Sequence[Subject], predicate_type: str, predicate: Mapping[str, Any]
    ) -> Statement:
        statement = cls(tuple(subjects), predicate_type, dict(predicate))
        doc = {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_dict() for s in statement.subjects],
            "predicateType": statement.predicate_type,
            "predicate": statement.predicate,
        }
        try:
            raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise FormatError(f"in-toto statement: predicate is not JSON ({err})") from None
        return cls(statement.subjects, statement.predicate_type, statement.predicate, raw.encode())

    @classmethod
    def parse(cls, data: bytes) -> Statement:
        doc = parse_json_object(data, "in-toto statement")
        if doc.get("_type") != STATEMENT_TYPE:
            raise FormatError(
                f"in-toto statement: _type must be {STATEMENT_TYPE!r}, got {doc.get('_type')!r}"
            )
        raw_subjects = doc.get("subject")
        if not isinstance(raw_subjects, list):
            raise FormatError("in-toto statement: subject must be a list")
        subjects = []
        for raw in raw_subjects:
            if not isinstance(raw, dict) or not isinstance(raw.get("digest"), dict):
                raise FormatError("in-toto statement: each subject needs a digest object")
            subjects.append(Subject(raw.get("name", ""), dict(raw["digest"])))
        predicate_type = doc.get("predicateType")
        if not isinstance(predicate_type, str):
            raise FormatError("in-toto statement: predicateType must be a string")
        predicate = doc.get("predicate", {})
        if not isinstance(predicate, dict):
            raise FormatError("in-toto statement: predicate must be a JSON object")
        return cls(tuple(subjects), predicate_type, predicate, bytes(data))

    def names_digest(self, digest: str) -> bool:
        """True if a subject carries the OCI digest ``<alg>:<hex>``."""
        algorithm, _, value = digest.partition(":")
        return any(s.digest.get(algorithm) == value for s in self.subjects)
