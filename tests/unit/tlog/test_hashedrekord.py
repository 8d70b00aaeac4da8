"""hashedrekord v0.0.2 bodies: the one Rekor v2 (rekor-tiles v2.3.0) stored for a request is
exactly the one rebuilt from the request's digest, signature and certificate."""

from __future__ import annotations

import pytest

from opk_sign.errors import FormatError
from opk_sign.tlog.hashedrekord import LoggedEntry, SignedDigest, canonical_body

# canonicalizedBody of an entry the rekor-tiles v2.3.0 POSIX server returned on loopback.
SERVER_BODY = (
    b'{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{"hashedRekordV002":{"data":{"algorithm":'
    b'"SHA2_256","digest":"LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="},"signature":{"content":'
    b'"MEUCIQC7tUE9i+fSbkTK4XbAbyh1/ssvNlPxGu9Q/ORymUqiSwIgdhBBgNc92GNTdEMcdi4hNPzYq8VwMbVvykd+7Y6'
    b'G4BE=","verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","x509Certificate":{"rawBytes":"MII'
    b"BBTCBq6ADAgECAgEDMAoGCCqGSM49BAMCMAwxCjAIBgNVBAMMAXgwHhcNMjYxMjAzMDUzODA5WhcNMjYxMjA0MDUzODA"
    b"5WjAMMQowCAYDVQQDDAF4MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAExkduieHv5jvlzyI8AkblL8ieUsbotiX1D7A"
    b"uC8BAQc2qxq6APndMOFoAi4lwEE/IW4JfGt/Tg1A8YGvQZnh2jzAKBggqhkjOPQQDAgNJADBGAiEA58NC0hTQpm+aPbq"
    b"9RmK+FndHxIcySpXcJYO303A7MScCIQCfmhTHG/dJshSoG7Otc6oOjf+GwUW6NPF4UiSo8R2XNA=="
    b'"}}}}}}'
)


def test_the_rebuilt_body_is_the_servers_byte_for_byte() -> None:
    logged = LoggedEntry.parse(SERVER_BODY)
    rebuilt = canonical_body(SignedDigest(logged.digest, logged.signature), logged.certificate)
    assert rebuilt == SERVER_BODY


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ((b'"kind":"hashedrekord"', b'"kind":"dsse"'), "kind"),
        ((b'"apiVersion":"0.0.2"', b'"apiVersion":"0.0.1"'), "version"),
        ((b'"SHA2_256"', b'"SHA2_384"'), "algorithm"),
        ((b'"x509Certificate"', b'"publicKey"'), "x509Certificate"),
        ((b'"content":"MEUC', b'"content":"!EUC'), "base64"),
    ],
)
def test_other_bodies_are_refused(change: tuple[bytes, bytes], error: str) -> None:
    with pytest.raises(FormatError, match=error):
        LoggedEntry.parse(SERVER_BODY.replace(*change))
    with pytest.raises(FormatError, match="larger"):
        LoggedEntry.parse(b" " * (65 * 1024))
