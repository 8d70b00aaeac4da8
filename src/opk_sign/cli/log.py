"""`opk-sign log monitor`: every signature a transparency log holds in a repository's name."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from opk_sign.errors import UsageError

EPILOG = """\
exit codes:
  0   every signature found since the last run is by an expected workflow (--expect-workflow)
  1   a signature by another workflow was found (a JSON line with "expected": false says which)
  2   usage: bad arguments, an unreadable keys or state file, a state file of another log
  12  the log's checkpoint is not signed by a trusted key (or the witness quorum is not met),
      or its entries do not add up to it: it is not append-only, or shows another view
  13  the log could not be read
  14  the issuer's keys (discovery, JWKS) could not be fetched

Output: one JSON line per finding on stdout: a signature (logIndex, image, digest, kind,
repository, workflow, ref, sha, time, issuer, expected) or junk (logIndex, repository, junk,
reason): an entry claiming the identity whose PK token or signature does not verify. A summary
goes to stderr. The state file keeps the log's size and the right edge of its Merkle tree; it is
written only after a complete, consistent read (docs/transparency.md).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "log",
        help="the transparency log: monitor the signatures made in a repository's name",
        description="Transparency log commands (docs/transparency.md).",
    )
    commands = parser.add_subparsers(dest="log_command", metavar="COMMAND", required=True)
    monitor = commands.add_parser(
        "monitor",
        help="report every signature the log holds in a repository's or an owner's name",
        description="Read a Rekor v2 log's tiles from the last checkpoint seen (--state) to the "
        "newest, verifying that the log only grew, and print each signature made in the "
        "identity's name; exit 1 if one is by a workflow not in --expect-workflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = monitor.add_mutually_exclusive_group(required=True)
    who.add_argument("--repository", metavar="OWNER/REPO", help="signatures of this repository")
    who.add_argument("--owner", metavar="OWNER", help="signatures of every repository of OWNER")
    monitor.add_argument(
        "--log-url",
        required=True,
        metavar="TILES_URL",
        help="base URL of the log's C2SP tiles (where its `checkpoint` file is)",
    )
    monitor.add_argument(
        "--state",
        required=True,
        type=Path,
        metavar="FILE",
        help="where the last checkpoint seen is kept (a new file: read from the first entry)",
    )
    monitor.add_argument(
        "--expect-workflow",
        action="append",
        default=[],
        metavar="WORKFLOW",
        help="a workflow allowed to sign, OWNER/REPO/.github/workflows/FILE.yml (any ref) or "
        "with @REF (that ref only); repeatable",
    )
    monitor.add_argument(
        "--from-latest",
        action="store_true",
        help="without a state file, start at the log's newest checkpoint instead of its first "
        "entry (a production log holds millions of entries)",
    )
    monitor.add_argument(
        "--tlog-keys",
        type=Path,
        metavar="FILE",
        help="the log's key (and witness keys) as C2SP note verifier keys (with the installed "
        "trust repository's tlog/keys.txt, if any)",
    )
    monitor.add_argument(
        "--no-trust-repo",
        dest="trust_repo",
        action="store_false",
        help="do not consult the installed TUF trust repository (its log keys, JWKS archive)",
    )
    monitor.add_argument(
        "--issuer",
        metavar="URL",
        help="the OIDC issuer of the PK tokens (default: $OPK_SIGN_OIDC_ISSUER, else GitHub's)",
    )
    monitor.add_argument(
        "--jwks", type=Path, metavar="FILE", help="the issuer's JWKS from a file (else live)"
    )
    monitor.add_argument(
        "--jwks-archive",
        type=Path,
        metavar="FILE",
        help="a JWKS archive: keys the issuer has rotated out (old entries' tokens)",
    )
    monitor.set_defaults(func=run_monitor)


def run_monitor(args: argparse.Namespace) -> int:
    from opk_sign.http import new_session
    from opk_sign.issuer import default_issuer
    from opk_sign.oidc.discovery import JWKSCache
    from opk_sign.pktoken import OPKeySource
    from opk_sign.tlog.monitor import Identity
    from opk_sign.tlog.monitor import run_monitor as monitor
    from opk_sign.tlog.reader import TilesReader
    from opk_sign.trust.jwks_archive import KeySourceChain
    from opk_sign.verify.keys import jwks_from_file
    from opk_sign.verify.options import installed_trust_client, load_jwks_archive, load_tlog_trust

    identity = Identity(repository=args.repository, owner=args.owner)
    issuer = args.issuer or default_issuer()
    trust_client = installed_trust_client(offline=False) if args.trust_repo else None
    trust = load_tlog_trust(args.tlog_keys, trust_client)
    if trust is None:
        raise UsageError(
            "no transparency log key is trusted",
            hint="give --tlog-keys FILE ('log <vkey>' lines), or install a trust repository "
            "that distributes them",
        )
    keys: OPKeySource = jwks_from_file(args.jwks, issuer) if args.jwks else JWKSCache(new_session())
    archives: list[OPKeySource] = []
    if args.jwks_archive is not None:
        archives.append(load_jwks_archive(args.jwks_archive))
    archive = trust_client.jwks_archive(issuer) if trust_client is not None else None
    if archive is not None:
        archives.append(archive)
    if archives:
        keys = KeySourceChain(keys, *archives)

    def emit(line: dict[str, object]) -> None:
        print(json.dumps(line, sort_keys=True), flush=True)

    with TilesReader(args.log_url) as reader:
        report = monitor(
            reader,
            trust,
            args.state,
            identity=identity,
            keys=keys,
            issuers={issuer},
            allowed=args.expect_workflow,
            emit=emit,
            from_latest=args.from_latest,
        )
    unexpected = report.unexpected
    print(
        f"{report.origin}: read entries {report.previous_size} to {report.size}: "
        f"{len(report.signatures)} signature(s), {len(unexpected)} by an unexpected workflow, "
        f"{len(report.junk)} junk",
        file=sys.stderr,
    )
    return 1 if unexpected else 0
