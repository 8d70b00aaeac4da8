"""OpenPubkey signed messages (OSM): a compact JWS over any bytes, by the PK token's user key.

Its ``kid`` is the PK token's hash, which binds the message to exactly one PK token. Verifying an
OSM does not verify the PK token: do that first (:func:`opk_sign.pktoken.verify_pktoken`).
"""

from __future__ import annotations

from typing import Final

from opk_sign.errors import FormatError, OSMError, SignatureError
from opk_sign.jose import CompactJWS, b64encode, go_json, verify
from opk_sign.pktoken.cic import UserKey
from opk_sign.pktoken.token import PKToken

OSM_TYP: Final = "osm"
#: Header members that would change how the JWS must be processed; we implement none of them.
_FORBIDDEN_HEADERS: Final = ("crit", "b64", "jku", "jwk", "x5u", "x5c")


def new_osm(pkt: PKToken, user_key: UserKey, message: bytes, typ: str = OSM_TYP) -> str:
    """Sign ``message`` with the PK token's user key."""
    cic = pkt.cic_claims()
    if cic.alg != user_key.alg or cic.public_key != user_key.public_key:
        raise OSMError("OSM: the signing key is not the PK token's user key (upk)")
    protected = b64encode(go_json({"alg": cic.alg, "kid": pkt.hash(), "typ": typ}))
    payload = b64encode(message)
    signature = user_key.sign(f"{protected}.{payload}".encode("ascii"))
    return f"{protected}.{payload}.{b64encode(signature)}"


def verify_osm(pkt: PKToken, osm: str | bytes, typ: str = OSM_TYP) -> bytes:
    """Check an OSM against a (separately verified) PK token; return the signed message."""
    try:
        jws = CompactJWS.parse(osm, "OSM")
        header = jws.header("OSM")
    except FormatError as err:
        raise OSMError(err.message) from None
    if header.get("typ") != typ:
        raise OSMError(f"OSM: typ must be {typ!r}, got {header.get('typ')!r}")
    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise OSMError(f"OSM: header {name!r} is not allowed")
    cic = pkt.cic_claims()
    if header.get("alg") != cic.alg:
        raise OSMError(f"OSM: alg {header.get('alg')!r} differs from the CIC alg {cic.alg!r}")
    if header.get("kid") != pkt.hash():
        raise OSMError("OSM: kid is not the hash of this PK token (signed under another token)")
    try:
        verify(cic.public_key, cic.alg, jws.signature, jws.signing_input, "OSM")
    except SignatureError as err:
        raise OSMError(f"{err.message} with the PK token's user key (upk)") from None
    return jws.payload
