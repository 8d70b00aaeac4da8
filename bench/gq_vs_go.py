"""GQ256 sign and verify: opk_sign (Python + GMP) against the Go reference's `gq` package, on the
same RSA-2048 key and ID token, on this machine, in one run.

    make bench            # or: .venv/bin/python -m bench.gq_vs_go [--iterations N]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from tests.services.interop import go_gqbench, go_mint, load_minted

from opk_sign.pktoken import gq


def python_ns_per_op(iterations: int, jwt: str, jwk: dict[str, object]) -> tuple[int, int]:
    token = gq.sign_jwt(jwt, jwk)  # warm-up, as the Go side does
    gq.verify_jwt(token, jwk)
    start = time.perf_counter_ns()
    for _ in range(iterations):
        token = gq.sign_jwt(jwt, jwk)
    signed = time.perf_counter_ns()
    for _ in range(iterations):
        gq.verify_jwt(token, jwk)
    done = time.perf_counter_ns()
    return (signed - start) // iterations, (done - signed) // iterations


def main() -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        go_mint(Path(tmp), count=1)
        minted = load_minted(Path(tmp))
    go = go_gqbench(minted.idtoken, minted.op_jwk, args.iterations)
    py_sign, py_verify = python_ns_per_op(args.iterations, minted.idtoken, minted.op_jwk)
    rows = [
        ("sign (RS256 check + GQ256 proof)", py_sign, go["sign_ns_per_op"]),
        ("verify", py_verify, go["verify_ns_per_op"]),
    ]
    lines = [
        f"GQ256, RSA-{go['modulus_bits']}, {args.iterations} iterations each, "
        f"{go['go_version']} vs Python {platform.python_version()}",
        "",
        "| operation | opk_sign | Go reference | opk_sign / Go |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, ours, theirs in rows:
        lines.append(
            f"| {name} | {ours / 1e6:.2f} ms | {theirs / 1e6:.2f} ms | {ours / theirs:.2f}x |"
        )
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main()
