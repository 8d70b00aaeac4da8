"""The monitor: every signature a log holds in a repository's (or an owner's) name since last time.

``opk-sign log monitor`` reads a tiled log from the last checkpoint it saw to the newest:

1. the newest checkpoint must be signed by a trusted log key (and cosigned by the witness quorum);
2. every entry from the last size seen is read and appended to the Merkle tree's right edge kept
   in the state file; the root that gives must be the new checkpoint's, which proves the log only
   grew since the last run (no entry changed or removed: a split view would show here) and that
   no entry was skipped;
3. each hashedrekord entry whose certificate carries a PK token with that repository's (owner's)
   claims is checked: the certificate self-signed by the key the PK token commits to, the PK
   token's GQ256 proof under the issuer's key (live JWKS or an archive; its age does not matter
   here), the entry's signature by that key. What fails is reported as junk (anyone can log any
   certificate), never as a signature;
4. each signature is one JSON line: log index, image, kind, repository, workflow, ref, sha, time;
   ``expected`` says whether its workflow is in the allow list. An entry that breaks a parser
   (anyone can log one) is a junk line too, and the run goes on.

The lines are emitted only once every entry read adds up to the signed checkpoint (nothing
unverified is reported), and the state is saved after that.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from opk_sign.errors import (
    FormatError,
    OpkSignError,
    TransparencyError,
    UsageError,
    VerificationError,
)
from opk_sign.jose import JSONObject, parse_json_object
from opk_sign.pktoken import ExpiryPolicy, OPKeySource, verify_pktoken
from opk_sign.tlog.cert import parse_certificate
from opk_sign.tlog.checkpoint import TlogTrust, verify_checkpoint
from opk_sign.tlog.hashedrekord import LoggedEntry
from opk_sign.tlog.merkle import CompactRange, leaf_hash
from opk_sign.tlog.reader import TilesReader

MAX_STATE_BYTES: Final = 16 * 1024


@dataclass(frozen=True)
class MonitorState:
    origin: str
    tree: CompactRange = field(default_factory=CompactRange)

    @classmethod
    def load(cls, path: Path) -> MonitorState | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise UsageError(f"cannot read --state {path}: {err.strerror}") from None
        if len(data) > MAX_STATE_BYTES:
            raise UsageError(f"--state {path}: larger than {MAX_STATE_BYTES} bytes")
        try:
            doc = parse_json_object(data, f"--state {path}")
            origin, size, hashes = doc["origin"], doc["size"], doc["compactRange"]
            if (
                not isinstance(origin, str)
                or not isinstance(size, int)
                or not isinstance(hashes, list)
            ):
                raise TypeError
            tree = CompactRange(size, tuple(base64.b64decode(h, validate=True) for h in hashes))
        except (KeyError, TypeError, ValueError, FormatError, TransparencyError):
            raise UsageError(
                f"--state {path} is not a monitor state file",
                hint="give a new file: the monitor then reads the log from its first entry",
            ) from None
        return cls(origin, tree)

    def save(self, path: Path) -> None:
        doc = {
            "origin": self.origin,
            "size": self.tree.size,
            "rootHash": base64.b64encode(self.tree.root()).decode(),
            "compactRange": [base64.b64encode(h).decode() for h in self.tree.hashes],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent=2)
            out.write("\n")
        os.replace(tmp, path)


@dataclass(frozen=True)
class Identity:
    """Whose signatures to report: a repository (``OWNER/REPO``) or every repository of an owner."""

    repository: str | None = None
    owner: str | None = None

    def __post_init__(self) -> None:
        if (self.repository is None) == (self.owner is None):
            raise UsageError("give --repository OWNER/REPO or --owner OWNER")

    def matches(self, claims: Mapping[str, Any]) -> bool:
        if self.repository is not None:
            return bool(claims.get("repository") == self.repository)
        return bool(claims.get("repository_owner") == self.owner)


def workflow_expected(job_workflow_ref: str, allowed: Collection[str]) -> bool:
    """Whether a workflow (``OWNER/REPO/.github/workflows/F.yml@REF``) is allowed: named exactly,
    or by its path without ``@REF``."""
    path = job_workflow_ref.partition("@")[0]
    return job_workflow_ref in allowed or path in allowed


@dataclass
class MonitorReport:
    origin: str
    previous_size: int
    size: int
    signatures: list[JSONObject] = field(default_factory=list)
    junk: list[JSONObject] = field(default_factory=list)

    @property
    def unexpected(self) -> list[JSONObject]:
        return [s for s in self.signatures if not s["expected"]]


def _iso(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def examine(
    index: int,
    body: bytes,
    *,
    identity: Identity,
    keys: OPKeySource,
    issuers: Collection[str],
    allowed: Collection[str],
) -> JSONObject | None:
    """The JSON line for one log entry: a signature in ``identity``'s name, junk claiming to be
    one, or None (another kind of entry, or someone else's)."""
    try:
        logged = LoggedEntry.parse(body)
        certified = parse_certificate(logged.certificate)
        claims = certified.pk_token.claims()
    except (FormatError, TransparencyError):
        return None  # not an opk-sign entry
    if not identity.matches(claims):
        return None
    line: JSONObject = {"logIndex": index, "repository": claims.get("repository")}
    try:
        verify_pktoken(
            certified.pk_token,
            keys,
            issuers=frozenset(issuers),
            expiry=ExpiryPolicy.from_name("never"),
        )
        certified.public_key.verify(
            logged.signature, logged.digest, ec.ECDSA(Prehashed(hashes.SHA256()))
        )
    except InvalidSignature:
        return {**line, "junk": True, "reason": "the entry's signature is not by the key"}
    except (VerificationError, FormatError) as err:
        return {**line, "junk": True, "reason": err.message}
    workflow = str(claims.get("job_workflow_ref") or claims.get("workflow_ref") or "")
    subject = certified.subject
    return {
        **line,
        "image": subject.reference if subject else None,
        "digest": subject.digest if subject else None,
        "kind": subject.kind if subject else None,
        "workflow": workflow,
        "ref": claims.get("ref"),
        "sha": claims.get("sha"),
        "time": _iso(claims.get("iat")),
        "issuer": claims.get("iss"),
        "expected": workflow_expected(workflow, allowed),
    }


def run_monitor(
    reader: TilesReader,
    trust: TlogTrust,
    state_file: Path,
    *,
    identity: Identity,
    keys: OPKeySource,
    issuers: Collection[str],
    allowed: Iterable[str] = (),
    emit: Callable[[JSONObject], None] = lambda line: None,
    from_latest: bool = False,
) -> MonitorReport:
    """Read the log from the state's size to the newest checkpoint; ``emit`` each finding.
    Without a state: from the first entry, or with ``from_latest`` from the newest checkpoint
    (the tree's right edge read from its hash tiles, checked against the signed root)."""
    checked = verify_checkpoint(reader.checkpoint(), trust)
    checkpoint = checked.checkpoint
    state = MonitorState.load(state_file)
    if state is None and from_latest:
        edge = reader.tree_edge(checkpoint.size)
        if edge.root() != checkpoint.root_hash:
            raise TransparencyError(
                f"the hash tiles of {checkpoint.origin!r} do not add up to its signed checkpoint"
            )
        state = MonitorState(checkpoint.origin, edge)
    state = state or MonitorState(checkpoint.origin)
    if state.origin != checkpoint.origin:
        raise UsageError(
            f"--state {state_file} is of log {state.origin!r}, not {checkpoint.origin!r}"
        )
    tree = state.tree
    if checkpoint.size < tree.size:
        raise TransparencyError(
            f"the log {checkpoint.origin!r} shrank from {tree.size} to {checkpoint.size} entries "
            "since the last run: it is not append-only (or shows another view)"
        )
    report = MonitorReport(checkpoint.origin, tree.size, checkpoint.size)
    allowed_set = frozenset(allowed)
    findings: list[JSONObject] = []
    for index, body in reader.entries(tree.size, checkpoint.size):
        tree = tree.append(leaf_hash(body))
        line = _examine_one(
            index, body, identity=identity, keys=keys, issuers=issuers, allowed=allowed_set
        )
        if line is None:
            continue
        (report.junk if line.get("junk") else report.signatures).append(line)
        findings.append(line)
    if tree.root() != checkpoint.root_hash:
        raise TransparencyError(
            f"the entries of {checkpoint.origin!r} do not add up to its signed checkpoint "
            f"({checkpoint.size} entries): the log changed what it showed before, or shows "
            "another view",
            hint="keep the state file and the output: this is evidence against the log",
        )
    # Only now, the entries proven to be the signed checkpoint's: nothing unverified is reported.
    # Emitted before the state is saved, so that a run cut off in between reports them again
    # rather than never.
    for line in findings:
        emit(line)
    MonitorState(checkpoint.origin, tree).save(state_file)
    return report


def _examine_one(
    index: int,
    body: bytes,
    *,
    identity: Identity,
    keys: OPKeySource,
    issuers: Collection[str],
    allowed: Collection[str],
) -> JSONObject | None:
    """:func:`examine`, where an entry that breaks the parsers (anyone can log one) is a junk
    line, and the run goes on: one hostile entry must not blind every monitor of the log. The
    monitor's own failures (the issuer's keys unreachable, a deadline) still stop the run, with
    the state unsaved, so that no entry is skipped."""
    try:
        return examine(index, body, identity=identity, keys=keys, issuers=issuers, allowed=allowed)
    except (FormatError, VerificationError) as err:
        reason = err.message
    except OpkSignError:
        raise
    except Exception as err:  # a malformed entry, whatever the parser it broke
        reason = f"the entry does not parse ({type(err).__name__})"
    return {"logIndex": index, "repository": None, "junk": True, "reason": f"malformed: {reason}"}
