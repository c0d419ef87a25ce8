"""Keep camera and speaker credentials out of logs, console output and the web page."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SECRET_FIELDS = frozenset({"password", "secret", "token"})
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")


def scrub(text: str) -> str:
    """Remove credentials from every URL inside free text (error messages quote the URL they failed on)."""
    return _CREDENTIALS.sub(r"\1***@", text)


def redact_url(url: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://***@host/x``; other strings are returned unchanged."""
    if "://" not in url or "@" not in url:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def redact_fields(fields: dict[str, object]) -> dict[str, object]:
    """A config's fields with secrets masked and URL credentials removed."""
    return {
        key: "***" if key in SECRET_FIELDS else redact_url(value) if isinstance(value, str) else value
        for key, value in fields.items()
    }
