"""`opk-sign trust …`: the TUF-distributed trust repository (mapping, policies, JWKS archive).

``trust init`` and ``trust status`` are for verifiers; ``trust repo …`` for the repository's
maintainers (python-tuf's Metadata API).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from opk_sign.errors import FormatError, OpkSignError, TrustError, UsageError
from opk_sign.policy import signed_repositories

if TYPE_CHECKING:
    from opk_sign.trust.client import TrustStatus
    from opk_sign.trust.repository import TrustRepository

KEYS_DIR_ENV = "OPK_SIGN_TRUST_KEYS_DIR"

CLIENT_EPILOG = """\
exit codes:
  0   success
  2   usage: bad arguments, unreadable files
  14  trust material: no repository configured, python-tuf refused the repository's metadata
      (rollback, expired/frozen, mix-and-match, bad signatures), the server could not be
      reached, or this opk-sign is older than the repository requires

environment:
  OPK_SIGN_TRUST_DIR          where the trust root, configuration and cache live
                              (default: the user cache directory, e.g. ~/.cache/opk-sign/trust)
"""

REPO_EPILOG = """\
exit codes:
  0   the change is signed and written (publish: the repository is copied)
  2   usage: bad arguments, unreadable files, missing or unprotected keys
  14  trust material: the repository is inconsistent, a JWKS snapshot was refused (a kid
      whose key changed), or the issuer's JWKS could not be fetched

environment:
  OPK_SIGN_TRUST_KEYS_DIR     default for --keys-dir (private keys, *.pem, mode 0600)
"""

Runner = Callable[[argparse.Namespace], int]

#: How the client picks a rule, as `trust status` prints it (docs/trust.md, "mapping.json").
PRECEDENCE = (
    "rewrites apply first, then the most specific matching rule wins: an exact name, else the"
    " longest literal prefix, then the most literal characters, then the fewest **, then the"
    " pattern first in code-point order (the order in mapping.json does not matter)"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trust = subparsers.add_parser(
        "trust",
        help="the TUF trust repository: install a root, show status, maintain a repository",
        description="Trust material distributed through TUF: which image names must be signed "
        "by whom (mapping.json and policies), the JWKS archive of the OIDC providers' past keys "
        "and trusted TSA certificates.",
        epilog=CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = trust.add_subparsers(dest="trust_command", metavar="COMMAND", required=True)
    _register_client(commands)
    repo = commands.add_parser(
        "repo",
        help="maintain a trust repository (python-tuf Metadata API)",
        description="Create and update an opk-sign TUF repository in a working directory DIR, "
        "then publish it to a directory any static web server can serve.",
        epilog=REPO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _register_repo(repo.add_subparsers(dest="repo_command", metavar="COMMAND", required=True))


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    description: str,
    epilog: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help_text,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# --- verifiers -----------------------------------------------------------------------------------


def _register_client(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = _command(
        commands,
        "init",
        "install the trust root of a TUF repository",
        "Install ROOT (the repository's root metadata, obtained out of band, e.g. the "
        "published metadata/1.root.json checked against its announced hash) as the trust anchor "
        "for the repository served at URL (which has metadata/ and targets/). The repository is "
        "refreshed once to prove it verifies, unless --no-refresh.",
        CLIENT_EPILOG,
    )
    init.add_argument("--root", type=Path, required=True, metavar="FILE", help="root metadata")
    init.add_argument("--url", required=True, help="base URL of the published repository")
    init.add_argument(
        "--no-refresh",
        dest="refresh",
        action="store_false",
        help="install without contacting the repository",
    )
    init.set_defaults(func=_guarded(_run_init))

    status = _command(
        commands,
        "status",
        "show the trusted repository: versions, expiries, mapping rules",
        "Refresh the installed trust repository (once) and show the trusted root version, the "
        "expiry of each role's metadata, the targets and the mapping rules.",
        CLIENT_EPILOG,
    )
    status.add_argument(
        "--offline",
        action="store_true",
        help="fetch nothing: use the cached metadata (which must not have expired)",
    )
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")
    status.set_defaults(func=_guarded(_run_status))


def _run_init(args: argparse.Namespace) -> int:
    from opk_sign.trust.client import TrustClient, TrustConfig, default_trust_dir, install

    root = _read(args.root, "root metadata")
    try:
        config = TrustConfig.for_url(args.url, root)
    except TrustError as err:
        raise TrustError(f"{args.root}: {err.message}", hint=err.hint) from None
    trust_dir = default_trust_dir()
    if args.refresh:
        TrustClient(config, trust_dir=trust_dir).refresh()
    install(config, trust_dir)
    print(f"Installed the trust root for {args.url} in {trust_dir}")
    return 0


def _run_status(args: argparse.Namespace) -> int:
    from opk_sign.trust.client import TrustClient

    client = TrustClient(offline=args.offline)
    status = client.status()
    if client.notice:
        print(f"warning: {client.notice}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(status.to_dict(), indent=2))
    else:
        print(format_status(status))
    return 0


def format_status(status: TrustStatus) -> str:
    """The human summary of a TrustStatus."""
    lines = [
        f"Trust repository {status.metadata_url}",
        f"  mode: {'offline (cached data, nothing fetched)' if status.offline else 'online'}",
    ]
    for role in status.roles:
        lines.append(
            f"  {role.name:<9} v{role.version:<4} expires {role.expires:%Y-%m-%dT%H:%M:%SZ}"
        )
    mapping = status.mapping
    if mapping.min_verifier_version:
        lines.append(f"  minimum verifier version: {mapping.min_verifier_version}")
    lines.append(f"  mapping: {len(mapping.rules)} rule(s), in the order they are tried")
    lines.append(f"    precedence: {PRECEDENCE}")
    for rewrite in mapping.rewrites_in_precedence():
        lines.append(f"    rewrite {rewrite.source} => {rewrite.target}")
    for rule in mapping.rules_in_precedence():
        lines.append(f"    {rule.pattern} -> {rule.policy}")
    for found in mapping.overlaps():
        lines.append(f"    overlap: {found.describe()}")
    lines.append(f"  targets: {', '.join(status.targets)}")
    return "\n".join(lines)


# --- maintainers ---------------------------------------------------------------------------------


def _register_repo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = _command(
        commands,
        "init",
        "create a repository and its ed25519 keys",
        "Create a new repository in DIR (absent or empty): root, targets, snapshot and "
        "timestamp metadata, an empty mapping.json, and new ed25519 keys in KEYDIR (mode "
        "0600). Keep the root and targets keys offline; snapshot and timestamp keys sign every "
        "change and may live in CI secrets.",
        REPO_EPILOG,
    )
    init.add_argument("dir", type=Path, metavar="DIR")
    _keys_option(init)
    init.add_argument(
        "--threshold",
        type=_positive,
        default=1,
        metavar="N",
        help="signatures needed for root and targets (default: 1)",
    )
    init.add_argument(
        "--keys",
        dest="key_count",
        type=_positive,
        metavar="K",
        help="keys made for root and targets each (default: the threshold)",
    )
    init.add_argument(
        "--expires",
        action="append",
        default=[],
        metavar="ROLE=DURATION",
        help="validity of a role's metadata, e.g. timestamp=1d or root=730d (repeatable; "
        "defaults: root 365d, targets 90d, snapshot 14d, timestamp 3d)",
    )
    init.set_defaults(func=_guarded(_run_repo_init))

    policy = _command(
        commands,
        "set-policy",
        "add or replace a policy document",
        "Add or replace the policy NAME (stored as policies/NAME.json) from FILE, a YAML or "
        "JSON mapping of policy fields as `opk-sign verify --policy` reads it.",
        REPO_EPILOG,
    )
    policy.add_argument("dir", type=Path, metavar="DIR")
    policy.add_argument("name", metavar="NAME", help="e.g. official-images")
    policy.add_argument("file", type=Path, metavar="FILE")
    _keys_option(policy)
    policy.set_defaults(func=_guarded(_run_set_policy))

    mapping = _command(
        commands,
        "map",
        "map an image-name pattern to a policy",
        "Add (or change) the mapping rule PATTERN -> policy POLICY-NAME. PATTERN is a glob on "
        "normalised names (docker.io/library/*, ghcr.io/org/**); the most specific matching "
        "rule wins (an exact name, then the longest literal prefix). --rewrite maps a mirror's "
        "names to canonical ones before matching. A rule that overlaps a rule with another "
        "policy, or a rewrite whose source overlaps a rule, is refused unless --force.",
        REPO_EPILOG,
    )
    mapping.add_argument("dir", type=Path, metavar="DIR")
    mapping.add_argument("pattern", metavar="PATTERN")
    mapping.add_argument("policy", metavar="POLICY-NAME")
    mapping.add_argument(
        "--rewrite",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="mirror rewrite, e.g. mirror.gcr.io/library/*=docker.io/library/* (repeatable)",
    )
    mapping.add_argument(
        "--signed-repository",
        action="append",
        metavar="NAME",
        help="a repository the images may have been signed in before being copied here "
        "(repeatable; the rule's signedRepositories; the policy still names the signer)",
    )
    mapping.add_argument(
        "--force",
        action="store_true",
        help="accept overlapping entries (verifiers apply the most specific one)",
    )
    _keys_option(mapping)
    mapping.set_defaults(func=_guarded(_run_map))

    jwks = _command(
        commands,
        "add-jwks",
        "merge a snapshot of an issuer's JWKS into its archive",
        "Merge the issuer's current JWKS into the repository's JWKS archive: new keys are "
        "first seen now, known keys last seen now, no key is ever dropped, and a known key id "
        "with other key material is refused.",
        REPO_EPILOG,
    )
    jwks.add_argument("dir", type=Path, metavar="DIR")
    jwks.add_argument("--issuer", required=True, metavar="URL", help="the OIDC issuer")
    source = jwks.add_mutually_exclusive_group(required=True)
    source.add_argument("--jwks-file", type=Path, metavar="FILE", help="a JWKS document")
    source.add_argument(
        "--fetch", action="store_true", help="fetch the live JWKS by OIDC discovery"
    )
    jwks.add_argument(
        "--at",
        type=_positive,
        metavar="SECONDS",
        help="when the snapshot was taken, UTC seconds (default: now)",
    )
    _keys_option(jwks)
    jwks.set_defaults(func=_guarded(_run_add_jwks))

    tsa = _command(
        commands,
        "set-tsa-certs",
        "publish the trusted timestamp authorities' certificates",
        "Publish FILE (PEM certificates of the trusted TSAs) as the tsa/certs.pem target.",
        REPO_EPILOG,
    )
    tsa.add_argument("dir", type=Path, metavar="DIR")
    tsa.add_argument("file", type=Path, metavar="FILE")
    _keys_option(tsa)
    tsa.set_defaults(func=_guarded(_run_set_tsa_certs))

    tlog = _command(
        commands,
        "set-tlog-keys",
        "publish the trusted transparency log and witness keys",
        "Publish FILE (lines 'log <vkey>', 'witness <vkey>', 'quorum <N>': C2SP note verifier "
        "keys, docs/transparency.md) as the tlog/keys.txt target.",
        REPO_EPILOG,
    )
    tlog.add_argument("dir", type=Path, metavar="DIR")
    tlog.add_argument("file", type=Path, metavar="FILE")
    _keys_option(tlog)
    tlog.set_defaults(func=_guarded(_run_set_tlog_keys))

    minimum = _command(
        commands,
        "set-min-version",
        "require a minimum opk-sign version of verifiers",
        "Set the minimum opk-sign version (X.Y.Z) that may verify with this repository; older "
        "verifiers refuse with exit code 14.",
        REPO_EPILOG,
    )
    minimum.add_argument("dir", type=Path, metavar="DIR")
    minimum.add_argument("version", metavar="X.Y.Z")
    _keys_option(minimum)
    minimum.set_defaults(func=_guarded(_run_set_min_version))

    resign = _command(
        commands,
        "resign",
        "re-sign metadata with fresh expiries",
        "Sign new versions of snapshot and timestamp (and of --role root/targets) with fresh "
        "expiry dates; run it more often than the timestamp expires.",
        REPO_EPILOG,
    )
    resign.add_argument("dir", type=Path, metavar="DIR")
    resign.add_argument(
        "--role",
        action="append",
        choices=("root", "targets", "snapshot", "timestamp"),
        help="also re-sign this role (repeatable; default: snapshot and timestamp)",
    )
    _keys_option(resign)
    resign.set_defaults(func=_guarded(_run_resign))

    publish = _command(
        commands,
        "publish",
        "copy the repository to a directory for a static web server",
        "Check DIR as a client would (signatures, versions, hashes, expiry) and copy it to "
        "OUTDIR: metadata/ (N.root.json, N.snapshot.json, N.targets.json, timestamp.json) and "
        "targets/ (content-addressed files). timestamp.json is written last.",
        REPO_EPILOG,
    )
    publish.add_argument("dir", type=Path, metavar="DIR")
    publish.add_argument("outdir", type=Path, metavar="OUTDIR")
    publish.set_defaults(func=_guarded(_run_publish))


def _keys_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys-dir",
        type=Path,
        default=Path(os.environ[KEYS_DIR_ENV]) if os.environ.get(KEYS_DIR_ENV) else None,
        metavar="KEYDIR",
        help=f"directory of the private keys (default: ${KEYS_DIR_ENV})",
    )


def _repository(args: argparse.Namespace) -> TrustRepository:
    from opk_sign.trust.repository import TrustRepository

    return TrustRepository(args.dir, getattr(args, "keys_dir", None))


def _changed(repo: TrustRepository, what: str) -> int:
    from opk_sign.trust.repository import ROLES

    versions = ", ".join(f"{role} v{repo.open(role).signed.version}" for role in ROLES)
    print(f"{what} ({versions})")
    return 0


def _run_repo_init(args: argparse.Namespace) -> int:
    from opk_sign.trust.repository import ROLES, TrustRepository, parse_duration

    if args.keys_dir is None:
        raise UsageError(f"give --keys-dir KEYDIR (or set {KEYS_DIR_ENV})")
    expiry = {}
    for item in args.expires:
        role, sep, duration = item.partition("=")
        if not sep or role not in ROLES:
            raise UsageError(f"--expires {item!r}: use ROLE=DURATION, ROLE one of {list(ROLES)}")
        expiry[role] = parse_duration(duration)
    repo = TrustRepository.create(
        args.dir,
        args.keys_dir,
        threshold=args.threshold,
        key_count=args.key_count,
        expiry=expiry,
    )
    return _changed(repo, f"Created the trust repository {args.dir}, keys in {args.keys_dir}")


def _run_set_policy(args: argparse.Namespace) -> int:
    from opk_sign.verify.options import load_policy_file

    document = load_policy_file(args.file)
    repo = _repository(args)
    target = repo.set_policy(args.name, document)
    return _changed(repo, f"Set policy {target}")


def _run_map(args: argparse.Namespace) -> int:
    rewrites = []
    for item in args.rewrite:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise UsageError(f"--rewrite {item!r}: use FROM=TO, e.g. mirror.example/*=docker.io/*")
        rewrites.append((source, target))
    signed_in = (
        signed_repositories(args.signed_repository) if args.signed_repository is not None else None
    )
    repo = _repository(args)
    mapping = repo.map(args.pattern, args.policy, rewrites, force=args.force, signed_in=signed_in)
    for found in mapping.overlaps():
        print(f"warning: {found.describe()}", file=sys.stderr)
    rule = next(r for r in mapping.rules if r.pattern == args.pattern)
    signed = f" (also signed in {', '.join(rule.signed_repositories)})" * bool(
        rule.signed_repositories
    )
    return _changed(repo, f"Mapped {rule.pattern} -> {rule.policy}{signed}")


def _run_add_jwks(args: argparse.Namespace) -> int:
    from opk_sign.jose import parse_json
    from opk_sign.urls import require_secure_url

    require_secure_url(args.issuer, "--issuer")
    if args.fetch:
        from opk_sign.oidc.discovery import fetch_jwks

        jwks = fetch_jwks(args.issuer)
    else:
        try:
            jwks = parse_json(_read(args.jwks_file, "JWKS file"), "JWKS file")
        except FormatError as err:
            raise UsageError(f"the JWKS file {args.jwks_file} is not JSON: {err.message}") from None
    repo = _repository(args)
    archive = repo.add_jwks(args.issuer, jwks, args.at or int(time.time()))
    return _changed(repo, f"JWKS archive of {args.issuer}: {len(archive.keys)} key(s)")


def _run_set_tsa_certs(args: argparse.Namespace) -> int:
    repo = _repository(args)
    count = repo.set_tsa_certs(_read(args.file, "TSA certificates"))
    return _changed(repo, f"Set {count} trusted TSA certificate(s)")


def _run_set_tlog_keys(args: argparse.Namespace) -> int:
    repo = _repository(args)
    trust = repo.set_tlog_keys(_read(args.file, "transparency log keys"))
    return _changed(
        repo,
        f"Set {len(trust.logs)} log key(s), {len(trust.witnesses)} witness key(s), "
        f"quorum {trust.quorum}",
    )


def _run_set_min_version(args: argparse.Namespace) -> int:
    repo = _repository(args)
    repo.set_min_version(args.version)
    return _changed(repo, f"Verifiers must be opk-sign {args.version} or newer")


def _run_resign(args: argparse.Namespace) -> int:
    repo = _repository(args)
    roles = repo.resign(args.role or ("snapshot", "timestamp"))
    return _changed(repo, f"Re-signed {', '.join(roles)}")


def _run_publish(args: argparse.Namespace) -> int:
    repo = _repository(args)
    written = repo.publish(args.outdir)
    print(f"Published {args.dir} to {args.outdir} ({len(written)} file(s) written)")
    return 0


# --- helpers -------------------------------------------------------------------------------------


def _guarded(run: Runner) -> Runner:
    """Every failure as an opk-sign error with its exit code, never a traceback."""

    @functools.wraps(run)
    def guarded(args: argparse.Namespace) -> int:
        from tuf.api import exceptions as tuf_errors

        try:
            return run(args)
        except OpkSignError:
            raise
        except ValueError as err:  # JSON documents, python-tuf value checks
            raise UsageError(str(err)) from None
        except tuf_errors.RepositoryError as err:
            raise TrustError(f"python-tuf refused the repository: {err}") from None
        except OSError as err:
            where = f" {err.filename}" if err.filename else ""
            raise OpkSignError(f"cannot write or read{where}: {err.strerror or err}") from None

    return guarded


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read the {what} {path}: {err.strerror}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value
