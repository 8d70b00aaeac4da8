"""A decision on one image at pull or admission time, its one-line reason and its audit record.

The reason says what was required (the mapping's policy for the name), what was found (the
verifier's finding, or why nothing could be found), and the exit code ``opk-sign verify`` gives
the same image, so an operator reading containerd's error can reproduce it. Pure logic.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Final

from opk_sign.errors import printable

#: The longest reason line: containerd keeps 32 KiB of a verifier's output; a reason is read by
#: a person in an error message.
MAX_REASON: Final = 2000


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one line (line breaks and indentation become "; "), printable, bounded."""
    flat = re.sub(r"\s*\n\s*(?:- )?", "; ", text.strip())
    flat = printable(flat)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Decision:
    """Allowed or refused, and why."""

    image: str
    allowed: bool
    #: The outcome label (``verified``, ``no-signatures``, ``policy-mismatch``, ``unmapped`` ...).
    outcome: str
    #: The exit code ``opk-sign verify`` gives this image (0 verified; 2 no policy applies).
    exit_code: int
    #: What the policy required, or why nothing was required.
    required: str
    #: What was found.
    found: str
    digest: str | None = None
    #: The mapping rule that applied (its pattern), None for an unmapped name.
    rule: str | None = None
    #: "hit": decided from the verified-digest cache, "miss": verified now, None: not cacheable.
    cache: str | None = None
    trust_version: str | None = None
    seconds: float = 0.0
    #: The signer's claims, when verified (repository, workflow ref ...).
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def verb(self) -> str:
        return "allowed" if self.allowed else "refused"

    def reason(self) -> str:
        """The one line for containerd's error (and the service's item error)."""
        what = (
            self.image
            if self.digest is None or "@" in self.image
            else f"{self.image}@{self.digest}"
        )
        text = (
            f"opk-sign {self.verb} {what}: required: {self.required}; found: {self.found}; "
            f"`opk-sign verify` exits {self.exit_code} ({self.outcome})"
        )
        return one_line(text)

    def audit_record(self, now: float | None = None) -> dict[str, Any]:
        stamp = time.gmtime(time.time() if now is None else now)
        record: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", stamp),
            "decision": "allow" if self.allowed else "refuse",
            "image": self.image,
            "digest": self.digest,
            "outcome": self.outcome,
            "exitCode": self.exit_code,
            "required": self.required,
            "found": one_line(self.found),
            "rule": self.rule,
            "cache": self.cache,
            "trustVersion": self.trust_version,
            "seconds": round(self.seconds, 4),
        }
        if self.identity:
            record["identity"] = self.identity
        return record

    def audit_line(self, now: float | None = None) -> str:
        return json.dumps(self.audit_record(now), ensure_ascii=True, sort_keys=True)
