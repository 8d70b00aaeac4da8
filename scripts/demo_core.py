"""The OpenPubkey core, end to end on loopback, as a signing job would run it:

ephemeral ES256 key -> CIC and commitment -> ID token from the (emulated) GitHub token endpoint
with the commitment as audience -> ID token checked against the issuer's JWKS -> GQ256 ->
PK token -> a signed message -> verified back.
"""

from __future__ import annotations

import json
import sys

from opk_sign import gq
from opk_sign.dev.github_oidc import GitHubOIDCEmulator
from opk_sign.jose import b64decode
from opk_sign.oidc import GitHubActionsProvider, fetch_jwks, verify_id_token
from opk_sign.pktoken import (
    PKToken,
    StaticJWKS,
    UserKey,
    commitment,
    new_cic_header,
    new_osm,
    verify_osm,
    verify_pktoken,
)


def main() -> int:
    with GitHubOIDCEmulator() as emulator:
        print(f"GitHub OIDC emulator on {emulator.issuer} (local testing only)")
        user_key = UserKey.generate("ES256")
        cic = new_cic_header(user_key)
        aud = commitment(cic)
        print(f"1. ephemeral ES256 key, commitment {aud}")

        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        id_token = provider.id_token(aud)
        jwks = fetch_jwks(emulator.issuer)
        claims = verify_id_token(id_token, jwks, issuer=emulator.issuer, audience=aud)
        print(f"2. ID token for {claims['repository']} ({claims['job_workflow_ref']}), aud checked")

        kid = json.loads(b64decode(id_token.split(".")[0]))["kid"]
        op_jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
        pkt = PKToken.build(gq.sign_jwt(id_token, op_jwk), cic, user_key)
        assert id_token.split(".")[2] not in pkt.to_json().decode()
        print(f"3. PK token ({len(pkt.to_json())} bytes JSON): GQ256 proof, no RSA signature")

        osm = new_osm(pkt, user_key, b"sha256:" + b"ab" * 32)
        verified = verify_pktoken(pkt, StaticJWKS(emulator.issuer, jwks), issuers={emulator.issuer})
        message = verify_osm(pkt, osm)
        print(f"4. verified: issuer {verified.issuer}, signer {verified.claims['sub']}")
        print(f"   signed message {message.decode()}")
        print("\nPK token (compact):")
        print(pkt.to_compact()[:160] + "...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
