"""When a signature is logged (``sign --tlog auto|always|never``) and where: the decision, apart
from the log client (:mod:`opk_sign.tlog.client`), so that signing without a log never loads it."""

from __future__ import annotations

from typing import Final

from opk_sign.names import TLOG_MODES

#: Sigstore's production Rekor v2 instance, as Sigstore's published signing config
#: (sigstore/root-signing, targets/signing_config.v0.2.json: "rekorTlogUrls", API version 2)
#: lists it. Rekor v2 shards by year; a later shard is a later release of opk-sign.
DEFAULT_TLOG_URL: Final = "https://log2025-1.rekor.sigstore.dev"


def should_log(mode: str, claims: object) -> bool:
    """Whether ``sign --tlog MODE`` logs for a token with these claims: ``auto`` only for a
    public repository (a private or internal one's claims would become public)."""
    if mode not in TLOG_MODES:
        raise ValueError(f"tlog mode must be one of {TLOG_MODES}, got {mode!r}")
    if mode == "auto":
        return isinstance(claims, dict) and claims.get("repository_visibility") == "public"
    return mode == "always"
