"""SIP URI parsing, on its own so config validation can use it without importing the SIP backend."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PORT = 5060


@dataclass(frozen=True)
class SipUri:
    """The parts of ``sip:user@host:port`` the SIP backend uses."""

    user: str
    host: str
    port: int

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"sip:{user}{self.host}:{self.port}"


def parse_sip_uri(uri: str) -> SipUri:
    """Parse a SIP URI; raises ValueError (config validation shows it) for anything else, e.g. sips: or TCP."""
    m = re.fullmatch(r"sip:(?:([^@:;]+)(?::[^@]*)?@)?(\[[0-9a-fA-F:.]+\]|[^:;>\s]+)(?::(\d+))?(;[^\s]*)?", uri.strip())
    if not m:
        raise ValueError(f'expected "sip:user@host[:port]", got {uri!r}')
    params = (m.group(4) or "").lower()
    if "transport=" in params and "transport=udp" not in params:
        raise ValueError(f"only UDP transport is supported, got {uri!r}")
    port = int(m.group(3) or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {uri!r}")
    return SipUri(m.group(1) or "", m.group(2).strip("[]"), port)
