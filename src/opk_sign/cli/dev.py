"""`opk-sign dev …`: local development helpers (the GitHub Actions OIDC emulator, a sample
image pusher)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opk_sign.cli.options import add_registry_options
from opk_sign.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = subparsers.add_parser("dev", help="local development helpers (never used to verify)")
    tools = dev.add_subparsers(dest="dev_command", metavar="TOOL", required=True)
    oidc = tools.add_parser(
        "github-oidc",
        help="serve an emulator of GitHub Actions' OIDC token service on 127.0.0.1",
        description=(
            "Serve an emulator of GitHub Actions' OIDC token service on 127.0.0.1 and print the "
            "environment a job with `permissions: id-token: write` would have. Runs until "
            "interrupted (SIGINT or SIGTERM)."
        ),
    )
    oidc.add_argument("--port", type=_port, default=0, help="port to listen on (default: any)")
    oidc.add_argument(
        "--issuer", help="issuer to claim (default: the emulator's own http://127.0.0.1:PORT)"
    )
    oidc.add_argument(
        "--claims",
        type=Path,
        metavar="FILE.json",
        help="JSON object of claim-template settings, e.g. "
        '{"repository": "me/app", "ref": "refs/tags/v1", "environment": "prod"}',
    )
    oidc.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="write the `export NAME=value` lines (the job's variables, OPK_SIGN_OIDC_ISSUER and "
        "OPK_SIGN_TLOG=never) to FILE (mode 0600) instead of stdout",
    )
    oidc.set_defaults(func=_run_github_oidc)

    sample = tools.add_parser(
        "push-sample",
        help="push a small random multi-platform image (for demos and local testing)",
        description="Push a small random image to IMAGE (its tag, else latest): one manifest per "
        "--platform and, with more than one, an OCI index over them. Prints the digest.",
    )
    sample.add_argument("image", metavar="IMAGE", help="where to push, e.g. 127.0.0.1:5000/demo:v1")
    sample.add_argument(
        "--platform",
        dest="platforms",
        action="append",
        metavar="OS/ARCH[/VARIANT]",
        help="a platform to include (repeatable; default: linux/amd64 and linux/arm64)",
    )
    add_registry_options(sample)
    sample.set_defaults(func=_run_push_sample)


def _run_push_sample(args: argparse.Namespace) -> int:
    from opk_sign._dev.sample_image import DEFAULT_PLATFORMS, push_sample_image
    from opk_sign.cli.options import registry_client
    from opk_sign.errors import FormatError
    from opk_sign.oci.reference import Reference

    reference = Reference.parse(args.image)
    if reference.digest:
        raise UsageError(
            "push-sample needs a tag, not a digest", hint="e.g. 127.0.0.1:5000/demo:v1"
        )
    try:
        with registry_client(args, reference.registry) as client:
            pushed = push_sample_image(client, reference, args.platforms or DEFAULT_PLATFORMS)
    except (FormatError, ValueError) as err:
        raise UsageError(f"invalid --platform: {err}") from None
    print(pushed.digest)
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _load_claims(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read --claims file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--claims file {path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UsageError(
            f"--claims file {path} must hold a JSON object",
            hint='e.g. {"repository": "me/app", "environment": "prod"}',
        )
    return document


def _check_issuer(issuer: str) -> None:
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UsageError(
            f"--issuer must be an http(s) URL without query or fragment (got {issuer!r})",
            hint="e.g. https://token.actions.githubusercontent.com",
        )


def _write_env_file(path: Path, text: str) -> None:
    # The file holds the request token: readable by its owner only.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write --env-file {path}: {exc.strerror}") from None


def _run_github_oidc(args: argparse.Namespace) -> int:
    from opk_sign._dev.github_oidc import GitHubOIDCEmulator
    from opk_sign.issuer import ISSUER_VAR

    claims = _load_claims(args.claims) if args.claims else {}
    if args.issuer:
        _check_issuer(args.issuer)
    try:
        emulator = GitHubOIDCEmulator(port=args.port, issuer=args.issuer, claims=claims)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}",
            hint="choose another --port, or 0 for any free port",
        ) from None

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with emulator:
        print(
            "warning: this GitHub OIDC emulator is for local testing; its tokens are trusted only "
            "by a verifier explicitly pointed at its issuer",
            file=sys.stderr,
        )
        # The issuer too: `opk-sign sign` and `verify` would otherwise expect GitHub's and fail
        # (exit 14) for the emulator's tokens. Last, after the variables a runner sets. And no
        # transparency log by default: the emulator's tokens are junk to Sigstore's public log
        # (a local one can still be asked for: --tlog always --tlog-url URL).
        env = {**emulator.env(), ISSUER_VAR: emulator.issuer, "OPK_SIGN_TLOG": "never"}
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        print(f"# issuer: {emulator.issuer}", flush=True)
        if args.env_file:
            _write_env_file(args.env_file, exports)
            print(f"# env: {args.env_file}", flush=True)
        else:
            print(exports, end="", flush=True)
        print(f"serving on {emulator.url} until interrupted", file=sys.stderr, flush=True)
        # A timed wait so signal handlers run promptly on every platform.
        while not stop.wait(0.2):
            pass
    return 0
