"""RFC 3161 timestamps: trust, verification and the verifier's use of them, on vectors a real TSA
(sigstore's timestamp-authority, tests/tsa) made (tests/assets/timestamps, see its README), and
requests answered by a transport stub. No network."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from requests.adapters import BaseAdapter

from opk_sign.actions.sign import ActionInputs, signing_options
from opk_sign.bundle import Bundle, Timestamp
from opk_sign.cli.main import build_parser
from opk_sign.cli.main import main as cli_main
from opk_sign.cli.options import PUBLIC_TSA, timestamp_url
from opk_sign.errors import (
    ExpiredTokenError,
    FormatError,
    NetworkError,
    TimestampError,
    TrustError,
    UsageError,
)
from opk_sign.jose import CompactJWS
from opk_sign.payloads.dsse import EnvelopeSignature
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS
from opk_sign.pktoken.verify import NEVER
from opk_sign.policy import policy_from_fields
from opk_sign.sign.image import SigningOptions
from opk_sign.trust.timestamp import TSATrust, verify_timestamp
from opk_sign.trust.tsa import DEFAULT_TIMESTAMP_URL, request_timestamp
from opk_sign.verify import verify_attestation_bundle, verify_signature_bundle
from tests.helpers import ASSETS, op_key

VECTORS = ASSETS / "timestamps"
ROOT = Path(__file__).resolve().parents[3]
DIGEST = "sha256:" + "ab" * 32
REPOSITORY = "ghcr.io/octo-org/app"
POLICY = policy_from_fields({"repository": "octo-org/octo-repo"})
KEYS = StaticJWKS(GITHUB_ISSUER, {"keys": [op_key().public_jwk()]})
DAY = 24 * 3600


def load(name: str) -> Bundle:
    return Bundle.from_json((VECTORS / f"{name}.json").read_bytes())


def chain(name: str = "tsa-chain") -> bytes:
    return (VECTORS / f"{name}.pem").read_bytes()


TRUST = TSATrust.from_pem(chain())
OTHER = TSATrust.from_pem(chain("other-tsa-chain"))


def iat(bundle: Bundle) -> int:
    value = bundle.pk_token.claims()["iat"]
    assert isinstance(value, int)
    return value


def check_signature(bundle: Bundle, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "digest": DIGEST,
        "docker_reference": REPOSITORY,
        "keys": KEYS,
        "policy": POLICY,
        "now": iat(bundle) + 30 * DAY,
    }
    args.update(kw)
    return verify_signature_bundle(bundle, **args)


# --- trust ----------------------------------------------------------------------------------------


def test_trust_from_the_tsa_certchain_endpoint() -> None:
    (tsa,) = TRUST.chains
    assert len(tsa.certificates) == 3  # time-stamping leaf, intermediate, root
    assert tsa.root.subject == tsa.root.issuer
    both = TSATrust.from_pem(chain("other-tsa-chain") + chain())
    assert len(both.chains) == 2


def test_trust_from_file(tmp_path: Path) -> None:
    path = tmp_path / "tsa.pem"
    path.write_bytes(chain())
    assert TSATrust.from_file(path) == TRUST
    with pytest.raises(TrustError, match="cannot read"):
        TSATrust.from_file(tmp_path / "missing.pem")


@pytest.mark.parametrize(
    ("pem", "needle"),
    [
        (b"", "not PEM certificates"),
        (b"not a certificate", "not PEM certificates"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not PEM"),
    ],
)
def test_trust_refuses_what_is_not_pem(pem: bytes, needle: str) -> None:
    with pytest.raises(TrustError, match=needle):
        TSATrust.from_pem(pem)


def test_a_chain_must_end_with_its_root() -> None:
    leaf_and_intermediate = x509.load_pem_x509_certificates(chain())[:2]
    with pytest.raises(TrustError, match="must end with its self-signed root"):
        TSATrust.from_certificates(leaf_and_intermediate)
    with pytest.raises(TrustError, match="no trusted TSA certificates"):
        TSATrust.from_certificates([])


# --- verify_timestamp ----------------------------------------------------------------------------


def test_a_real_timestamp_verifies_and_gives_its_time() -> None:
    bundle = load("signature-inside")
    (timestamp,) = bundle.timestamps
    moment = verify_timestamp(timestamp, bundle.signature_bytes(), TRUST)
    assert moment.tzinfo == UTC
    # Minted a minute before it was timestamped.
    assert iat(bundle) <= moment.timestamp() < iat(bundle) + 120


def test_imprint_over_another_signature_is_refused() -> None:
    bundle, other = load("signature-inside"), load("signature-before-iat")
    with pytest.raises(TimestampError, match="over another signature"):
        verify_timestamp(bundle.timestamps[0], other.signature_bytes(), TRUST)


def test_untrusted_tsa_is_refused() -> None:
    bundle = load("signature-inside")
    with pytest.raises(TimestampError, match="not signed by a trusted TSA") as caught:
        verify_timestamp(bundle.timestamps[0], bundle.signature_bytes(), OTHER)
    assert caught.value.hint and "certchain" in caught.value.hint


def test_any_trusted_chain_will_do() -> None:
    bundle = load("signature-inside")
    both = TSATrust.from_pem(chain("other-tsa-chain") + chain())
    verify_timestamp(bundle.timestamps[0], bundle.signature_bytes(), both)


def test_ca_certificates_alone_trust_the_leaf_they_issued_but_a_root_alone_is_not_enough() -> None:
    _, intermediate, root = x509.load_pem_x509_certificates(chain())
    bundle = load("signature-inside")
    signature = bundle.signature_bytes()
    verify_timestamp(
        bundle.timestamps[0], signature, TSATrust.from_certificates([intermediate, root])
    )
    # The token carries only the TSA's certificate: without the intermediate there is no path.
    with pytest.raises(TimestampError, match="not signed by a trusted TSA"):
        verify_timestamp(bundle.timestamps[0], signature, TSATrust.from_certificates([root]))


def test_a_pinned_leaf_must_be_the_signer() -> None:
    # The other TSA's leaf in front of this TSA's CA certificates: the token is signed by another
    # certificate than the one pinned.
    other_leaf = x509.load_pem_x509_certificates(chain("other-tsa-chain"))[0]
    _, intermediate, root = x509.load_pem_x509_certificates(chain())
    pinned = TSATrust.from_certificates([other_leaf, intermediate, root])
    bundle = load("signature-inside")
    with pytest.raises(TimestampError, match="not signed by a trusted TSA"):
        verify_timestamp(bundle.timestamps[0], bundle.signature_bytes(), pinned)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda token: b"\x30\x03\x02\x01\x00", "malformed"),
        (lambda token: token[:-10], "malformed"),
        (lambda token: token + b"\x00", "malformed"),
        (lambda token: b"\x30\x80" + token[4:], "malformed"),
        # The last bytes are the CMS signature value.
        (lambda token: _flip(token, len(token) - 5), "not signed by a trusted TSA"),
    ],
    ids=["not-a-token", "truncated", "trailing-byte", "indefinite-length", "bad-signature"],
)
def test_malformed_or_tampered_tokens_are_refused(mutate: Any, needle: str) -> None:
    bundle = load("signature-inside")
    token = mutate(bundle.timestamps[0].rfc3161)
    with pytest.raises(TimestampError, match=needle):
        verify_timestamp(Timestamp(token), bundle.signature_bytes(), TRUST)


def test_a_tampered_time_breaks_the_signature() -> None:
    bundle = load("signature-inside")
    token = bundle.timestamps[0].rfc3161
    stated = verify_timestamp(bundle.timestamps[0], bundle.signature_bytes(), TRUST)
    gen_time = stated.strftime("%Y%m%d%H%M%S").encode()
    at = token.index(gen_time)
    later = token[:at] + b"2099" + token[at + 4 :]
    with pytest.raises(TimestampError):
        verify_timestamp(Timestamp(later), bundle.signature_bytes(), TRUST)


# --- the bytes a timestamp covers ----------------------------------------------------------------


def test_signature_bytes_of_an_osm_and_of_a_dsse_envelope() -> None:
    signature = load("signature-inside")
    assert signature.osm is not None
    assert signature.signature_bytes() == CompactJWS.parse(signature.osm).signature
    attestation = load("attestation-inside")
    envelope = attestation.dsse_envelope
    assert envelope is not None
    assert attestation.signature_bytes() == envelope.signatures[0].sig
    two = replace(
        attestation,
        dsse_envelope=replace(envelope, signatures=(*envelope.signatures, EnvelopeSignature(b"x"))),
    )
    with pytest.raises(FormatError, match="exactly one signature"):
        two.signature_bytes()


# --- the verifier: expiry judged at the timestamp's time ------------------------------------------


def test_a_timestamped_signature_verifies_30_days_later_with_trusted_tsa() -> None:
    bundle = load("signature-inside")
    verified = check_signature(bundle, tsa=TRUST)
    (moment,) = verified.timestamps
    assert iat(bundle) <= moment.timestamp() < iat(bundle) + DAY


def test_without_trusted_tsa_or_without_timestamps_the_24h_policy_applies() -> None:
    bundle = load("signature-inside")
    with pytest.raises(ExpiredTokenError):
        check_signature(bundle)
    with pytest.raises(ExpiredTokenError):
        check_signature(replace(bundle, timestamps=()), tsa=TRUST)
    # Fresh, it verifies with or without trust for timestamps.
    assert check_signature(bundle, now=iat(bundle) + 60).timestamps == ()
    assert len(check_signature(bundle, now=iat(bundle) + 60, tsa=TRUST).timestamps) == 1


def test_a_timestamp_by_an_untrusted_tsa_fails_even_while_fresh() -> None:
    bundle = load("signature-inside")
    with pytest.raises(TimestampError, match="not signed by a trusted TSA"):
        check_signature(bundle, tsa=OTHER, now=iat(bundle) + 60)


def test_a_timestamp_moved_from_another_bundle_is_refused() -> None:
    bundle, donor = load("signature-inside"), load("signature-before-iat")
    with pytest.raises(TimestampError, match="over another signature"):
        check_signature(replace(bundle, timestamps=donor.timestamps), tsa=TRUST)


def test_a_timestamp_before_iat_is_refused() -> None:
    bundle = load("signature-before-iat")
    with pytest.raises(TimestampError, match="before the PK token was issued") as caught:
        check_signature(bundle, tsa=TRUST)
    issued = datetime.fromtimestamp(iat(bundle), UTC).isoformat()
    assert issued in caught.value.message


def test_a_timestamp_after_the_window_is_refused() -> None:
    bundle = load("signature-after-window")
    with pytest.raises(TimestampError, match="after the PK token's window had ended") as caught:
        check_signature(bundle, tsa=TRUST)
    assert "'24h'" in caught.value.message
    # The window is the expiry policy's: without an end, any time after iat is inside it.
    check_signature(bundle, tsa=TRUST, expiry=NEVER)


def test_every_timestamp_must_verify() -> None:
    bundle = load("signature-inside")
    donor = load("signature-before-iat")
    with pytest.raises(TimestampError, match="over another signature"):
        check_signature(
            replace(bundle, timestamps=(*bundle.timestamps, *donor.timestamps)), tsa=TRUST
        )


def test_a_timestamped_attestation_verifies_30_days_later() -> None:
    bundle = load("attestation-inside")
    args: dict[str, Any] = {
        "digest": DIGEST,
        "keys": KEYS,
        "policy": POLICY,
        "now": iat(bundle) + 30 * DAY,
    }
    verified = verify_attestation_bundle(bundle, tsa=TRUST, **args)
    assert verified.statement.predicate_type == "https://example.com/test/v1"
    assert len(verified.timestamps) == 1
    with pytest.raises(ExpiredTokenError):
        verify_attestation_bundle(bundle, **args)
    with pytest.raises(TimestampError):
        verify_attestation_bundle(bundle, tsa=OTHER, **args)


# --- request_timestamp, answered by a stub transport ---------------------------------------------


class Canned(BaseAdapter):
    """Answers every request with one status and body; remembers the requests."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__()
        self.status, self.body = status, body
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(request)
        response = requests.Response()
        response.status_code = self.status
        response.raw = _Raw(self.body)
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, amount: int, decode_content: bool = True) -> Any:
        yield from (self.body[i : i + amount] for i in range(0, len(self.body), amount))

    def read(self, amount: int = -1) -> bytes:
        body, self.body = self.body, b""
        return body

    def close(self) -> None:
        pass


def session(status: int, body: bytes) -> tuple[requests.Session, Canned]:
    http = requests.Session()
    adapter = Canned(status, body)
    http.mount("https://", adapter)
    return http, adapter


def response_der(token: bytes) -> bytes:
    body = bytes.fromhex("3003020100") + token
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


URL = "https://tsa.example/api/v1/timestamp"


def test_a_replayed_response_is_refused_by_its_nonce() -> None:
    # A real response, but to another request: the nonce (and the imprint) differ.
    bundle = load("signature-inside")
    http, adapter = session(200, response_der(bundle.timestamps[0].rfc3161))
    with pytest.raises(TimestampError, match="answered another request"):
        request_timestamp(URL, bundle.signature_bytes(), http)
    (sent,) = adapter.sent
    assert sent.method == "POST"
    assert sent.headers["Content-Type"] == "application/timestamp-query"
    assert isinstance(sent.body, bytes)
    # The query carries the SHA-256 of the signature.
    assert hashlib.sha256(bundle.signature_bytes()).digest() in sent.body


@pytest.mark.parametrize(
    ("status", "body", "error", "needle"),
    [
        (200, b"<html>not a tsa</html>", TimestampError, "not an RFC 3161 response"),
        (200, bytes.fromhex("300c300a0201023005") + b"\x0c\x03bad", TimestampError, "refused"),
        (400, b"bad request", TimestampError, "HTTP 400: bad request"),
        (404, b"", TimestampError, "HTTP 404"),
        (302, b"", TimestampError, "HTTP 302"),
        (503, b"", NetworkError, "unavailable"),
        (200, b"\x30" * 100_000, TimestampError, "more than"),
    ],
    ids=["garbage", "rejection", "400", "404", "redirect", "503", "huge"],
)
def test_bad_answers_are_errors_that_name_the_tsa(
    status: int, body: bytes, error: type[Exception], needle: str
) -> None:
    http, _ = session(status, body)
    with pytest.raises(error, match=needle) as caught:
        request_timestamp(URL, b"signature", http)
    assert URL in str(caught.value)


def test_a_transport_failure_is_a_network_error() -> None:
    class Down(BaseAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
            raise requests.ConnectionError("connection refused")

        def close(self) -> None:
            pass

    http = requests.Session()
    http.mount("https://", Down())
    with pytest.raises(NetworkError, match="could not reach the timestamp authority"):
        request_timestamp(URL, b"signature", http)


@pytest.mark.parametrize("url", ["http://tsa.example/api/v1/timestamp", "ftp://127.0.0.1/"])
def test_plain_http_only_on_loopback(url: str) -> None:
    with pytest.raises(UsageError, match="must use https"):
        request_timestamp(url, b"signature")


def test_stored_tokens_carry_the_tsa_certificate_as_requested() -> None:
    bundle = load("signature-inside")
    token = bundle.timestamps[0].rfc3161
    leaf = x509.load_pem_x509_certificates(chain())[0]
    assert leaf.public_bytes(Encoding.DER) in token
    assert base64.b64encode(token).decode() == bundle.to_dict()["timestamps"][0]["rfc3161"]


# --- where signing takes the TSA from ------------------------------------------------------------

LOOPBACK = "http://127.0.0.1:9/api/v1/timestamp"


def test_the_public_default_is_one_url_everywhere() -> None:
    metadata = yaml.safe_load((ROOT / "action.yml").read_text())
    assert metadata["inputs"]["timestamp-url"]["default"] == DEFAULT_TIMESTAMP_URL
    assert PUBLIC_TSA == DEFAULT_TIMESTAMP_URL
    assert DEFAULT_TIMESTAMP_URL in (ROOT / "docs" / "timestamps.md").read_text()


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, DEFAULT_TIMESTAMP_URL),
        ([], {"OPK_SIGN_TIMESTAMP_URL": LOOPBACK}, LOOPBACK),
        (["--timestamp-url", LOOPBACK], {"OPK_SIGN_TIMESTAMP_URL": "https://x.example/"}, LOOPBACK),
        (["--no-timestamp"], {"OPK_SIGN_TIMESTAMP_URL": LOOPBACK}, None),
    ],
)
def test_cli_timestamp_url(argv: list[str], env: dict[str, str], expected: str | None) -> None:
    args = build_parser().parse_args(["sign", "example.com/app:v1", *argv])
    assert timestamp_url(args, env) == expected


def test_cli_timestamp_flags_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli_main(["sign", "example.com/app:v1", "--timestamp-url", LOOPBACK, "--no-timestamp"]) == 2
    )
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        (None, {}, DEFAULT_TIMESTAMP_URL),  # INPUT_TIMESTAMP-URL absent: not run by a runner
        (None, {"OPK_SIGN_TIMESTAMP_URL": LOOPBACK}, LOOPBACK),
        ("", {"OPK_SIGN_TIMESTAMP_URL": LOOPBACK}, None),  # `timestamp-url: ""` disables
        (LOOPBACK, {}, LOOPBACK),
    ],
)
def test_action_timestamp_url(given: str | None, env: dict[str, str], expected: str | None) -> None:
    inputs = ActionInputs(
        image="example.com/app:v1",
        recursive=True,
        provenance=True,
        predicate="",
        predicate_type="",
        registry_username="",
        registry_password="",
        github_token="",
        timestamp_url=given,
    )
    assert signing_options(inputs, env).timestamp_url == expected


def test_signing_options_refuse_plain_http_off_loopback() -> None:
    with pytest.raises(UsageError, match="must use https"):
        SigningOptions(timestamp_url="http://tsa.example/api/v1/timestamp")
    assert SigningOptions().timestamp_url is None  # the library timestamps only when asked


def test_a_certificate_with_a_malformed_name_is_a_trust_error() -> None:
    """cryptography parses names lazily: a malformed issuer (a PrintableString tag turned into a
    constructed one, found by tests/unit/test_user_files_property.py) must be refused as a
    TrustError when the file is read, never a ValueError later."""
    chain = Path(__file__).resolve().parents[2] / "assets" / "timestamps" / "tsa-chain.pem"
    pem = chain.read_bytes()
    broken = pem.replace(b"BgNVBAMTDVRlc3Q", b"BgNVBAMkDVRlc3Q", 1)
    assert broken != pem
    with pytest.raises(TrustError, match="malformed"):
        TSATrust.from_pem(broken)
