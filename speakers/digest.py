"""HTTP-style authentication shared by the HTTP (VAPIX), SIP and RTSP (ONVIF) backends: challenge parsing,
Basic (RFC 7617) and Digest (RFC 2617/7616) credentials. Pure functions, no backend imports.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field

_PARAM = re.compile(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass
class Challenge:
    """One parsed ``WWW-Authenticate`` / ``Proxy-Authenticate`` challenge."""

    scheme: str  # lower case: "basic" or "digest"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(values: list[str]) -> list[Challenge]:
    """Parse challenge header values (one challenge per value, the common form)."""
    out = []
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        params = {k.lower(): (q if q or not u else u).replace('\\"', '"') for k, q, u in _PARAM.findall(rest)}
        out.append(Challenge(scheme.lower(), params))
    return out


def pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    """Prefer digest (password never sent) over basic; None when neither is offered."""
    for scheme in ("digest", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


def basic_authorization(username: str, password: str) -> str:
    """RFC 7617 credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def digest_authorization(
    challenge: Challenge, method: str, uri: str, username: str, password: str, nc: int = 1, cnonce: str | None = None
) -> str:
    """RFC 2617/7616 digest response (MD5, MD5-sess, SHA-256; qop auth or none). Raises ValueError otherwise."""
    p = challenge.params
    algorithm = p.get("algorithm", "MD5").upper()
    sess = algorithm.endswith("-SESS")
    hash_name = algorithm.removesuffix("-SESS")
    if hash_name not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm}")

    def h(text: str) -> str:
        return _HASHES[hash_name](text.encode()).hexdigest()

    realm, nonce = p.get("realm", ""), p.get("nonce", "")
    cnonce = cnonce or os.urandom(8).hex()
    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if qops:
        if "auth" not in qops:
            raise ValueError(f"unsupported digest qop {p['qop']!r}")
        response = h(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    fields += [f'response="{response}"', f"algorithm={algorithm}"]
    if "opaque" in p:
        fields.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(fields)
