"""`opk-sign serve --listen ADDR`: the verification service for Kubernetes admission."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from opk_sign.cli.options import add_insecure_registry_option

HELP = "an HTTP verification service for Kubernetes admission (external data provider)"

EPILOG = """\
endpoints:
  POST /          an external data ProviderRequest (Gatekeeper's shape; Kyverno's apiCall
                  posts it too): {"apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                  "kind": "ProviderRequest", "request": {"keys": ["IMAGE", ...]}}; answered
                  with a ProviderResponse, an item per key (error: the refusal's reason)
  GET /healthz    200 while serving
  GET /metrics    Prometheus text format

Each key is decided as the containerd verifier decides a pull: the trust repository's mapping
names the policy; unmapped names are allowed, or refused with --unmapped deny. See
docs/kubernetes.md for Kyverno and Gatekeeper policies.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from opk_sign.admission import settings as defaults  # the limits (no server module)

    parser = subparsers.add_parser(
        "serve",
        help=HELP,
        description=(
            "Serve image verification over HTTP for admission controllers (Kyverno, "
            "Gatekeeper): request size and concurrency limits, a deadline per request, the "
            "cache of verified digests, health and metrics endpoints."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen", required=True, metavar="ADDR", help="HOST:PORT to listen on (PORT 0: any)"
    )
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS: certificate")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="serve HTTPS: private key")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="verifier settings (the containerd verifier's TOML file); the flags below override",
    )
    parser.add_argument("--unmapped", choices=("allow", "deny"), help="default: allow")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="default: in memory only")
    parser.add_argument("--audit-log", type=Path, metavar="FILE", help="a JSON line per decision")
    parser.add_argument(
        "--registry-credentials",
        type=Path,
        metavar="FILE",
        help="a docker config.json (default: this user's docker config)",
    )
    add_insecure_registry_option(
        parser, "a registry reached over plain HTTP (repeatable; loopback needs none)"
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-body",
        type=int,
        default=defaults.SERVICE_MAX_BODY,
        metavar="BYTES",
        help=f"largest request body (default: {defaults.SERVICE_MAX_BODY}; larger: 413)",
    )
    limits.add_argument(
        "--max-concurrency",
        type=int,
        default=defaults.SERVICE_MAX_CONCURRENCY,
        metavar="N",
        help=f"requests decided at once (default: {defaults.SERVICE_MAX_CONCURRENCY}; more: 429)",
    )
    limits.add_argument(
        "--request-timeout",
        type=float,
        default=defaults.SERVICE_REQUEST_TIMEOUT,
        metavar="SECONDS",
        help=f"deadline of one request (default: {defaults.SERVICE_REQUEST_TIMEOUT:g}; keep it "
        "below the admission webhook's timeout)",
    )
    limits.add_argument(
        "--jobs",
        type=int,
        default=defaults.SERVICE_JOBS,
        metavar="N",
        help=f"images verified at once, over all requests (default: {defaults.SERVICE_JOBS})",
    )
    parser.set_defaults(func=run)


def _address(text: str) -> tuple[str, int]:
    from opk_sign.errors import UsageError

    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 0.0.0.0:8443")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from opk_sign.admission.engine import Engine
    from opk_sign.admission.server import ServiceLimits, serve
    from opk_sign.admission.settings import Settings
    from opk_sign.containerd.verifier import load_settings
    from opk_sign.errors import UsageError

    host, port = _address(args.listen)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    for name in ("max_body", "max_concurrency", "jobs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.request_timeout <= 300:
        raise UsageError("--request-timeout must be more than 0 and at most 300 seconds")
    # Named, so it must exist: a missing file is refused, never defaults (fail closed).
    settings = load_settings(args.config, explicit=True) if args.config is not None else Settings()
    overrides = {
        "unmapped": args.unmapped,
        "cache_dir": args.cache_dir,
        "audit_log": args.audit_log,
        "registry_credentials": args.registry_credentials,
    }
    changes = {
        k: (Path(os.path.abspath(v)) if isinstance(v, Path) else v)
        for k, v in overrides.items()
        if v is not None
    }
    if args.insecure_registries:
        changes["insecure_registries"] = tuple(args.insecure_registries)
    settings = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    limits = ServiceLimits(
        max_body=args.max_body,
        max_concurrency=args.max_concurrency,
        request_timeout=args.request_timeout,
        jobs=args.jobs,
        # Connections (threads) wait on slow clients at most read_timeout each; a few per slot.
        max_connections=4 * args.max_concurrency,
    )
    engine = Engine(settings)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert is not None else None
    server = serve(engine, host, port, limits, tls=tls)
    print(f"opk-sign serve: listening on {server.url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        engine.close()
    return 0
