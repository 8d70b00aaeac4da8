"""Drive `opk-interop`, the harness around the OpenPubkey Go reference implementation.

The binary is built from tests/interop by scripts/setup/20-interop-harness.sh. It mints PK tokens
and OSMs with the Go library's mock GitHub OP (`go_mint`), verifies PK tokens and OSMs with the Go
verifier (`go_verify`), and GQ256-signs, -verifies and benchmarks with the Go `gq` package.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

from tests.services.tools import tool_path

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


class VerifyResult(TypedDict):
    """One `opk-interop verify` result.

    `stage` names the step that failed: "input", "parse", "pktoken" or "osm" ("" when ok).
    `message_b64` is the OSM payload (standard base64) when an OSM was given and verified.
    """

    name: str
    ok: bool
    error: str
    message_b64: str
    stage: str


class GQBenchResult(TypedDict):
    sign_ns_per_op: int
    verify_ns_per_op: int
    sign_raw_ns_per_op: int
    iterations: int
    go_version: str
    modulus_bits: int


@dataclass(frozen=True)
class MintedSet:
    """One set of files written by `go_mint` (see tests/interop/mint.go)."""

    pktoken_json: str  # the PK token, pkt.MarshalJSON()
    pktoken_compact: str  # pkt.Compact()
    osm: str  # compact OSM JWS over `message`
    message: bytes
    jwks: dict[str, Any]  # the mock OP's JWKS (2 RSA-2048 keys, kid "kid-0"/"kid-1")
    meta: dict[str, Any]  # issuer, message_b64, op_kid, pkt_hash (the OSM kid), cic_alg
    idtoken: str  # an RS256 ID token from the same OP key and claims (aud = the commitment)
    op_jwk: dict[str, Any]  # the public JWK of the key that signed the ID token


def interop_binary() -> Path:
    """Path of the built `opk-interop` binary (a missing binary is an error, never a skip)."""
    return tool_path("opk-interop")


def _run(args: Sequence[str], *, stdin: str | None = None, timeout: float = 120.0) -> str:
    proc = subprocess.run(
        [str(interop_binary()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"opk-interop {args[0]} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def go_mint(
    out_dir: Path, count: int = 1, issuer: str | None = None, message: bytes | None = None
) -> None:
    """Mint PK token + OSM sets with the Go client and mock OP into out_dir.

    count == 1 writes the files into out_dir itself; count > 1 into out_dir/0 .. out_dir/N-1.
    All sets of one call share one mock OP (same JWKS). `message` must be UTF-8 text; by default
    each set signs a simple-signing document with a random digest.
    """
    args = ["mint", "--out", str(out_dir), "--count", str(count)]
    if issuer is not None:
        args += ["--issuer", issuer]
    if message is not None:
        args += ["--message", message.decode("utf-8")]
    _run(args, timeout=60.0 + count)


def load_minted(set_dir: Path) -> MintedSet:
    """Read one set written by `go_mint`."""

    def text(name: str) -> str:
        return (set_dir / name).read_text(encoding="utf-8")

    def obj(name: str) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(text(name)))

    return MintedSet(
        pktoken_json=text("pktoken.json"),
        pktoken_compact=text("pktoken.compact"),
        osm=text("osm"),
        message=(set_dir / "message").read_bytes(),
        jwks=obj("jwks.json"),
        meta=obj("meta.json"),
        idtoken=text("idtoken.jwt"),
        op_jwk=obj("op_jwk.json"),
    )


def go_verify(cases: list[dict[str, Any]]) -> dict[str, VerifyResult]:
    """Verify PK tokens (and OSMs) with the Go reference verifier.

    Each case: {"name": str, "pktoken": str (JSON serialization or compact form), "osm": str
    (optional), "jwks": dict (the OP's JWKS), "issuer": str (optional, default GitHub's),
    "expiration": "24h" (default) | "12h" | "48h" | "1w" | "oidc" | "never" (optional)}.
    Returns the results keyed by case name; names must be unique.
    """
    names = [str(case["name"]) for case in cases]
    if len(set(names)) != len(names):
        raise ValueError("go_verify: case names must be unique")
    stdin = "".join(json.dumps(case, separators=(",", ":")) + "\n" for case in cases)
    stdout = _run(["verify"], stdin=stdin, timeout=60.0 + len(cases))
    results: dict[str, VerifyResult] = {}
    for line in stdout.splitlines():
        if line.strip():
            result = cast(VerifyResult, json.loads(line))
            results[result["name"]] = result
    if sorted(results) != sorted(names):
        raise RuntimeError(f"opk-interop verify answered {sorted(results)}, asked {sorted(names)}")
    return results


def verified_message(result: VerifyResult) -> bytes:
    """The OSM payload of a successful `go_verify` result."""
    return base64.b64decode(result["message_b64"], validate=True)


def _with_jwt_and_jwk(
    jwt: str, jwk: Mapping[str, Any], args: Sequence[str], timeout: float = 120.0
) -> str:
    with tempfile.TemporaryDirectory(prefix="opk-interop-") as tmp:
        jwt_path, jwk_path = Path(tmp) / "token.jwt", Path(tmp) / "key.jwk"
        jwt_path.write_text(jwt, encoding="utf-8")
        jwk_path.write_text(json.dumps(dict(jwk)), encoding="utf-8")
        return _run(
            [args[0], "--jwt", str(jwt_path), "--jwk", str(jwk_path), *args[1:]], timeout=timeout
        )


def go_gqsign(rs256_jwt: str, jwk: Mapping[str, Any], *, jkt: bool = True) -> str:
    """GQ256-sign an RS256 JWT with the Go `gq` package (jwk: the OP's RSA JWK, or a JWKS).

    With jkt (the default, as the Go OP wrapper does) the GQ header carries the key's RFC 7638
    thumbprint.
    """
    return _with_jwt_and_jwk(rs256_jwt, jwk, ["gqsign"] if jkt else ["gqsign", "--no-jkt"]).strip()


def go_gqverify(gq_jwt: str, jwk: Mapping[str, Any]) -> tuple[bool, str]:
    """Verify a GQ256 token with the Go `gq` package: (ok, error text)."""
    result = json.loads(_with_jwt_and_jwk(gq_jwt, jwk, ["gqverify"]))
    return bool(result["ok"]), str(result["error"])


def go_gqbench(rs256_jwt: str, jwk: Mapping[str, Any], iterations: int) -> GQBenchResult:
    """Time the Go library's GQ256SignJWT and GQ256VerifyJWT (ns per operation)."""
    out = _with_jwt_and_jwk(
        rs256_jwt,
        jwk,
        ["gqbench", "--iterations", str(iterations)],
        timeout=60.0 + iterations,
    )
    return cast(GQBenchResult, json.loads(out))
