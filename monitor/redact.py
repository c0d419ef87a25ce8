"""Keep camera, speaker and notifier credentials out of logs, console output, events, metrics and the web page.

The one place that knows what a secret in a URL looks like; every log line, API field, event, page and metric
goes through it:

* :func:`redact_url` - one URL: ``rtsp://admin:pw@cam/x?token=t`` -> ``rtsp://***@cam/x?token=***``;
* :func:`scrub` - free text (error messages quote the URL they failed on): every URL in it redacted;
* :func:`scrub_any` - nested JSON: strings scrubbed, values of secret-named keys masked;
* :func:`redact_fields` - a config's fields for display;
* :func:`url_problem` - why a camera URL cannot work as written (``monitor check``, the stream worker).

None of them raises, whatever the string. The user information of a URL is everything between ``scheme://``
and the last ``@`` that is followed by a host[:port] and then ``/``, ``?``, ``#`` or the end: a password may
contain any character, ``/``, ``?``, ``#`` and ``@`` included (the standard parsers, urllib's and FFmpeg's,
end the host part at the first ``/``, ``?`` or ``#`` and then see part of the password as host, path or query).
``@`` in a query value of an otherwise well-formed URL (``?email=a@example.com``) is not taken for the end of a
password, but the part before it is masked as well, so that neither reading leaks anything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

MASK = "***"

# query/path parameters whose values are credentials (compared lowercase with '-', '_' and '.' removed)
_PARAM_NAMES = frozenset(
    {
        "user", "usr", "username", "login", "uid", "userid", "account", "pass", "pwd", "passwd", "password",
        "passphrase", "pin", "token", "key", "apikey", "auth", "authorization", "sig", "signature", "secret",
        "session", "sessionid", "sid", "credential", "credentials", "otp", "code",
    }
)  # fmt: skip
_PARAM_SUFFIXES = (
    "password", "passwd", "pwd", "token", "secret", "signature", "apikey", "accesskey", "secretkey", "privatekey",
    "sessionid", "credential", "credentials", "auth",
)  # fmt: skip
# JSON/config keys whose values are masked whole: the parameter names less user names and everyday words
_NOT_SECRET_KEYS = frozenset({"user", "usr", "username", "login", "uid", "userid", "account", "code"})

_SCHEME = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://")
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# a scheme that starts a new URL in free text: after a space, or a quote or bracket after a space
_NEXT_URL = re.compile(r"(?:(?<=\s)|(?<=\s['\"(<\[{]))[A-Za-z][A-Za-z0-9+.\-]*://")
_HOST_RUN = re.compile(r"[^\s/?#@]*")
_WELL_FORMED_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~%-]+)?\]|[A-Za-z0-9._~%!$&'()*+,;=-]+)(?::[0-9]*)?"
)
_HOSTNAME = re.compile(
    r"\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~%-]+)?\]|[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*\.?"
)
_PATH_PARAM = re.compile(r"(?:^|(?<=[/;&]))([^/;&=]+)=([^;&]*)")
_HOST_NEEDED = frozenset({"rtsp", "rtsps", "http", "https", "rtmp", "rtmps"})
_TRAILING = "'\"),;.!>}"
_LINE_END = re.compile(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_WHITESPACE = re.compile(r"\s")


def is_secret_param(name: str) -> bool:
    """Whether a URL query (or path) parameter of this name carries a credential: its value is masked."""
    key = re.sub(r"[-_.\s]", "", unquote(name)).lower()
    return key in _PARAM_NAMES or key.endswith(_PARAM_SUFFIXES)


def is_secret_key(name: str) -> bool:
    """Whether a JSON/config key names a secret (password, token, ...): its whole value is masked."""
    key = re.sub(r"[-_.\s]", "", name).lower()
    return key not in _NOT_SECRET_KEYS and (key in _PARAM_NAMES or key.endswith(_PARAM_SUFFIXES))


@dataclass(frozen=True, slots=True)
class _Parsed:
    """Where things are in one URL inside a string (indices into that string)."""

    authority: int  # just after scheme://
    user_end: int | None  # the '@' that ends the user information, if any
    standard_user_end: int | None  # the same as a standard parser sees it (authority ends at the first / ? #)
    host_end: int  # end of host[:port]
    end: int  # end of the URL
    spans: tuple[tuple[int, int], ...]  # what to mask

    @property
    def host_start(self) -> int:
        """Where host[:port] begins."""
        return self.authority if self.user_end is None else self.user_end + 1


def _first(s: str, chars: str, start: int, end: int) -> int:
    """Index of the first of ``chars`` in s[start:end], or ``end``."""
    found = [i for i in (s.find(c, start, end) for c in chars) if i >= 0]
    return min(found, default=end)


def _candidates(s: str, start: int, end: int) -> list[int]:
    """Every '@' in s[start:end] followed by something host-like and then '/', '?', '#', a space or the end."""
    out = []
    at = s.find("@", start, end)
    while at >= 0:
        run = _HOST_RUN.match(s, at + 1, end)
        after = run.end() if run else at + 1
        if after >= end or s[after] in "/?#" or s[after].isspace():
            out.append(at)
        at = s.find("@", at + 1, end)
    return out


def _in_query_value(s: str, at: int, authority_end: int, token_end: int) -> bool:
    """Whether ``at`` lies inside a ``name=value`` of the query when the host part ends at ``authority_end``."""
    if at >= token_end:
        return False
    query = _first(s, "?#", authority_end, token_end)
    if query >= token_end or s[query] != "?" or at < query:
        return False
    if _first(s, "#", query, token_end) < at:
        return False
    segment = max(s.rfind("&", query, at), query) + 1
    return s.find("=", segment, at) >= 0


def _param_spans(s: str, start: int, end: int, cands: list[int], url_end: int) -> list[tuple[int, int]]:
    """Masks for ``a=b&c=d`` in s[start:end]: secret-named values; the part of a value before a host-like '@'."""
    spans: list[tuple[int, int]] = []
    pos = start
    while pos <= end:
        stop = s.find("&", pos, end)
        stop = end if stop < 0 else stop
        eq = s.find("=", pos, stop)
        if eq >= 0:
            if is_secret_param(s[pos:eq]):
                spans.append((eq + 1, stop))
            else:
                inside = [c for c in cands if eq < c < stop]
                if inside:  # 'a=b@host/...' may be the end of a password: hide it in both readings
                    spans += [(pos, eq), (eq + 1, inside[-1])]
                    spans += _tail_spans(s, inside[-1] + 1, url_end, cands)
        pos = stop + 1
    return spans


def _tail_spans(s: str, host_start: int, end: int, cands: list[int]) -> list[tuple[int, int]]:
    """Masks in host[:port][/path][?query][#fragment] = s[host_start:end]."""
    host_end = _first(s, "/?#", host_start, end)
    path_end = _first(s, "?#", host_end, end)
    path = s[host_end:path_end]
    spans = [(host_end + m.start(2), host_end + m.end(2)) for m in _PATH_PARAM.finditer(path) if is_secret_param(m[1])]
    fragment = _first(s, "#", path_end, end)
    if path_end < end and s[path_end] == "?":
        spans += _param_spans(s, path_end + 1, fragment, cands, end)
    if fragment < end:
        spans += _param_spans(s, fragment + 1, end, [], end)
    return spans


def _consistent(s: str, host_start: int, cands: list[int], reach: int, text: bool) -> bool:
    """Whether, with the host starting at ``host_start``, every later host-like '@' lies inside a query value."""
    space = _WHITESPACE.search(s, host_start, reach) if text else None
    token_end = space.start() if space else reach
    authority_end = _first(s, "/?#", host_start, token_end)
    return all(_in_query_value(s, c, authority_end, token_end) for c in cands if c >= host_start)


def _parse(s: str, start: int, limit: int, text: bool) -> _Parsed:
    """The URL whose scheme starts at ``start``; in free text (``text``) it ends at a space or a new URL."""
    authority = s.index("://", start) + 3
    reach = limit
    if text:
        line = _LINE_END.search(s, authority, limit)
        nxt = _NEXT_URL.search(s, authority, line.start() if line else limit)
        reach = min(line.start() if line else limit, nxt.start() if nxt else limit)
    space = _WHITESPACE.search(s, authority, reach) if text else None
    # the standard reading: the host part ends at the first / ? # (urllib, FFmpeg)
    authority_end = _first(s, "/?#", authority, space.start() if space else reach)
    at = s.rfind("@", authority, authority_end)
    standard = at if at >= 0 else None
    host_start = authority if standard is None else standard + 1
    later = [c for c in _candidates(s, authority, reach) if c >= authority_end]
    user_end = standard
    if later and not (
        _WELL_FORMED_HOST.fullmatch(s, host_start, authority_end) and _consistent(s, host_start, later, reach, text)
    ):
        # a password with / ? # in it: the first host-like '@' after which any others are only in query values
        user_end = next(c for c in later if _consistent(s, c + 1, later, reach, text) or c == later[-1])
        host_start = user_end + 1
    end = reach
    if text:
        space = _WHITESPACE.search(s, host_start, reach)
        end = space.start() if space else reach
        while end > host_start and s[end - 1] in _TRAILING:
            end -= 1
    host_end = _first(s, "/?#", host_start, end)
    spans = _tail_spans(s, host_start, end, later)
    if user_end is not None and user_end > authority:
        spans.append((authority, user_end))
    port_from = host_start
    if s.startswith("[", host_start):  # an IPv6 address has colons: a port comes after the ']'
        close = s.find("]", host_start, host_end)
        port_from = close + 1 if close >= 0 else host_end
    colon = s.find(":", port_from, host_end)
    if 0 <= colon < host_end - 1 and not s[colon + 1 : host_end].isdigit():
        spans.append((colon + 1, host_end))  # not a port: 'rtsp://admin:secret/x' with the '@host' forgotten
    return _Parsed(authority, user_end, standard, host_end, end, tuple(spans))


def _apply(s: str, spans: Iterable[tuple[int, int]]) -> str:
    """``s`` with every span replaced by the mask (an empty one too: ``pwd=`` -> ``pwd=***``; overlaps merged)."""
    out: list[str] = []
    pos = 0
    for a, b in sorted(spans):
        if b <= pos and out:
            continue
        a = max(a, pos)
        out += [s[pos:a], MASK]
        pos = b
    out.append(s[pos:])
    return "".join(out)


def redact_url(url: str) -> str:
    """``rtsp://user:pass@host/x?pwd=y`` -> ``rtsp://***@host/x?pwd=***``; a string that is not a URL is scrubbed."""
    try:
        if not _URL_START.match(url):
            return scrub(url)
        return _apply(url, _parse(url, 0, len(url), text=False).spans)
    except Exception:  # never: but a log line must not take the camera down with it
        logging.getLogger(__name__).debug("redact_url failed", exc_info=True)
        return MASK


def _known_secrets(url: str) -> list[tuple[str, str]]:
    """(text, replacement): a URL we know in its quoted forms, then its secret parts, longest first."""
    if not _URL_START.match(url):
        return []
    parsed = _parse(url, 0, len(url), text=False)
    redacted = _apply(url, parsed.spans)
    found = {url[a:b] for a, b in parsed.spans}
    if parsed.user_end is not None:
        userinfo = url[parsed.authority : parsed.user_end]
        found |= {userinfo, userinfo.partition(":")[2]}
    found = {f for f in found if len(f) >= 4 and f not in redacted}
    found |= {repr(f)[1:-1] for f in found}
    pairs = [(form, redacted) for form in {url, repr(url)[1:-1]}] + [(f, MASK) for f in found]
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def scrub(text: str, *known_urls: str) -> str:
    """Every URL inside free text redacted (error messages quote the URL they failed on).

    ``known_urls``: URLs the caller used (a camera's own URL); their secrets are removed wherever they appear,
    also where a message quotes them in a form no URL scan recognises.
    """
    try:
        for url in known_urls:
            for secret, replacement in _known_secrets(url):
                text = text.replace(secret, replacement)
        spans: list[tuple[int, int]] = []
        pos = 0
        while (m := _SCHEME.search(text, pos)) is not None:
            parsed = _parse(text, m.start(), len(text), text=True)
            spans += parsed.spans
            pos = max(parsed.end, parsed.authority)
        return _apply(text, spans)
    except Exception:  # never: see redact_url
        logging.getLogger(__name__).debug("scrub failed", exc_info=True)
        return MASK


def scrub_any(value: Any) -> Any:
    """``scrub`` through nested JSON (dicts, lists, strings), masking values of secret-named keys."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [scrub_any(v) for v in value]
    if isinstance(value, dict):
        return {str(k): MASK if is_secret_key(str(k)) else scrub_any(v) for k, v in value.items()}
    return value


def redact_fields(fields: dict[str, object]) -> dict[str, object]:
    """A config's fields for display: secrets masked, each string field redacted as one URL."""

    def shown(key: str, value: object) -> object:
        if is_secret_key(key) and value is not None:
            return MASK
        return redact_url(value) if isinstance(value, str) else scrub_any(value)

    return {key: shown(key, value) for key, value in fields.items()}


class ScrubFilter(logging.Filter):
    """A log handler's filter: every record it emits scrubbed, a traceback included (then as plain text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
                record.exc_info, record.exc_text = None, None
            record.msg, record.args = scrub(message), None
        except Exception:  # a record that cannot be formatted is the logging module's to report
            pass
        return True


def url_problem(url: str, *, spaces: bool = True) -> str | None:
    """Why a stream URL cannot work as written (None: it can, or it is not a URL but a file name).

    ``spaces=False`` lets spaces pass (FFmpeg takes them in a password; ``monitor check`` still asks for %20).
    """
    try:
        scheme = url.partition("://")[0].lower()
        if not _URL_START.match(url) or scheme == "file":
            return None
        if not url.isprintable():
            return "contains a control character (a line break, tab, ...)"
        if spaces and any(c.isspace() for c in url):
            return "contains a space: percent-encode it (%20)"
        parsed = _parse(url, 0, len(url), text=False)
        if parsed.user_end != parsed.standard_user_end:
            return (
                "has a user name or password with '/', '?' or '#' in it, which end the host part of a URL: "
                "percent-encode them (%2F, %3F, %23)"
            )
        hostport = url[parsed.host_start : parsed.host_end]
        close = hostport.find("]") + 1 if hostport.startswith("[") else 0  # an IPv6 address has colons
        name, _, port = hostport[close:].partition(":")
        host = hostport[:close] + name
        if not host:
            return "has no host" if scheme in _HOST_NEEDED else None  # udp://:1234 listens
        if not _HOSTNAME.fullmatch(host):
            return "has an invalid host name or address"
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
            return "has a port that is not a number from 1 to 65535"
        return None
    except Exception:  # never: see redact_url
        return "cannot be parsed as a URL"
