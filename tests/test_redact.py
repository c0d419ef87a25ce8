"""Redaction of credentials in URLs, free text and JSON: the bugs seen on main, and properties over generated URLs."""

from __future__ import annotations

import logging
import logging.handlers
import re

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from monitor.redact import MASK, ScrubFilter, redact_fields, redact_url, scrub, scrub_any, url_problem

BUGS = [
    # (url, what must be gone, what must stay) - each raised IndexError or leaked on main
    ("rtsp://admin:pa/ss@10.0.0.5:554/stream1", ["pa/ss", "admin"], "rtsp://***@10.0.0.5:554/stream1"),
    ("rtsp://admin:pa?ss@10.0.0.5:554/stream1", ["pa?ss"], "rtsp://***@10.0.0.5:554/stream1"),
    ("rtsp://admin:pa#ss@10.0.0.5:554/stream1", ["pa#ss"], "rtsp://***@10.0.0.5:554/stream1"),
    ("rtsp://admin:p@ss@10.0.0.5/stream1", ["p@ss", "@ss@"], "rtsp://***@10.0.0.5/stream1"),
    ("rtsp://admin:12/34@cam.local/s", ["12/34"], "rtsp://***@cam.local/s"),  # urllib: host 'admin', port 12
    ("rtsp://10.0.0.5/x?a=b@c", [], "rtsp://10.0.0.5/x?***=***@c"),  # '@' in the query string, no user
    ("rtsp://10.0.0.5/x?usr=admin&pwd=s3cret&channel=1", ["s3cret", "usr=admin"], "?usr=***&pwd=***&channel=1"),
    ("http://10.0.0.5/snap.cgi?Token=abc123", ["abc123"], "http://10.0.0.5/snap.cgi?Token=***"),
    ("https://h.example/x?access_token=t0ken&X-Amz-Signature=s1g", ["t0ken", "s1g"], "https://h.example/x?"),
    ("rtsp://10.0.0.5/x?PassWord=p%40ss#frag", ["p%40ss"], "?PassWord=***#frag"),
    ("rtsp://admin:p@ss/w?rd#1@127.0.0.1:9/gate", ["p@ss/w?rd#1"], "rtsp://***@127.0.0.1:9/gate"),
    ("rtsp://10.0.0.9:554/user=admin&password=xyz1&channel=1", ["xyz1"], "/user=***&password=***&channel=1"),
    ("rtsp://cam/x?email=ops@example.com&key=k3y1", ["k3y1"], "rtsp://cam/x?***=***@example.com&key=***"),
    ("rtsp://u:p@[fe80::1%25eth0]:554/x", ["u:p"], "rtsp://***@[fe80::1%25eth0]:554/x"),
]


@pytest.mark.parametrize(("url", "gone", "kept"), BUGS, ids=[b[0] for b in BUGS])
def test_known_bugs_are_redacted_without_raising(url: str, gone: list[str], kept: str) -> None:
    for out in (redact_url(url), scrub(f"error opening '{url}': Connection refused"), scrub(url)):
        assert kept in out, out
        assert not any(secret in out for secret in gone), out


def test_a_url_in_free_text_keeps_the_text_around_it() -> None:
    text = "camera gate offline (ArgumentError: Invalid argument: 'rtsp://admin:pa/ss@10.0.0.5/x' returned 22)"
    assert scrub(text) == "camera gate offline (ArgumentError: Invalid argument: 'rtsp://***@10.0.0.5/x' returned 22)"
    two = "from rtsp://u:p1@a.example/x to http://v:q2@b.example/y?sig=zz, done"
    assert scrub(two) == "from rtsp://***@a.example/x to http://***@b.example/y?sig=***, done"
    assert scrub("no URL here: user@example.com, 5 s") == "no URL here: user@example.com, 5 s"


def test_a_password_with_spaces_is_redacted_in_a_quoted_error() -> None:
    url = "rtsp://admin:correct horse 1234@10.0.0.5/x"
    assert redact_url(url) == "rtsp://***@10.0.0.5/x"
    assert scrub(f"Connection refused: '{url}'") == "Connection refused: 'rtsp://***@10.0.0.5/x'"


def test_the_callers_own_url_is_removed_in_any_quoting() -> None:
    url = "rtsp://admin:we\\ird'pass@10.0.0.5/x"
    message = f"OSError: {url!r} failed, password {url.split(':')[2].split('@')[0]!r}"  # repr doubles the backslash
    out = scrub(message, url)
    assert "ird'pass" not in out and "ird\\\\'pass" not in out and "10.0.0.5/x" in out


def test_a_password_without_its_host_is_not_shown_as_a_port() -> None:
    assert redact_url("rtsp://admin:Zq9x/stream1") == "rtsp://admin:***/stream1"  # '@host' forgotten
    assert redact_url("rtsp://[::1]:8554/x") == "rtsp://[::1]:8554/x" and redact_url("rtsp://h:/x") == "rtsp://h:/x"


def test_every_log_line_through_the_filter_is_scrubbed() -> None:
    logger = logging.getLogger("test_redact")
    handler = logging.handlers.BufferingHandler(10)
    handler.addFilter(ScrubFilter())
    logger.addHandler(handler)
    try:
        logger.warning("speaker %s: %s", "porch", "401 for rtsp://root:Zq9x@10.0.0.7/audio?token=Tk42")
        try:
            raise OSError("cannot open 'http://root:Zq9x@10.0.0.7/x'")
        except OSError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    shown = [logging.Formatter().format(r) for r in handler.buffer]
    assert shown[0] == "speaker porch: 401 for rtsp://***@10.0.0.7/audio?token=***"
    assert "Traceback" in shown[1] and "http://***@10.0.0.7/x" in shown[1]
    assert not any("Zq9x" in line or "Tk42" in line for line in shown)


def test_redaction_is_idempotent_and_leaves_plain_strings_alone() -> None:
    for url, _, _ in BUGS:
        once = redact_url(url)
        assert redact_url(once) == once and scrub(once) == once
    for plain in ("", "sample_videos/square.mp4", "/data/my@video.mp4", "rtsp://10.0.0.5:554/Streaming/101"):
        assert redact_url(plain) == plain and scrub(plain) == plain


def test_json_masks_secret_keys_and_scrubs_strings() -> None:
    record = {
        "last_error": "Connection refused: 'rtsp://admin:s3cret@10.0.0.5/x?token=tt11'",
        "password": "hunter2",
        "Api_Key": {"nested": "x"},
        "client-secret": 5,
        "notes": ["http://u:p4ss@h/x", 3, None],
        "username": "ops",
        "code": 401,
    }
    out = scrub_any(record)
    assert out["last_error"] == "Connection refused: 'rtsp://***@10.0.0.5/x?token=***'"
    assert out["password"] == out["Api_Key"] == out["client-secret"] == MASK
    assert out["notes"] == ["http://***@h/x", 3, None] and out["username"] == "ops" and out["code"] == 401
    fields = redact_fields({"url": "rtsp://a:b@h/x", "password": "p", "username": "u", "port": 5})
    assert fields == {"url": "rtsp://***@h/x", "password": MASK, "username": "u", "port": 5}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("rtsp://admin:Zq/9x@10.0.0.5/x", "percent-encode them (%2F, %3F, %23)"),
        ("rtsp://admin:Zq?9x@10.0.0.5/x", "percent-encode them"),
        ("rtsp://admin:Zq#9x@10.0.0.5/x", "percent-encode them"),
        ("rtsp://admin:Zq 9x@10.0.0.5/x", "contains a space"),
        ("rtsp://10.0.0.5:99999/x", "port that is not a number"),
        ("rtsp://10.0.0.5:abc/x", "port that is not a number"),
        ("rtsp:///x", "has no host"),
        ("rtsp://[::1/x", "invalid host name"),
        ("rtsp://cam_1..x/", "invalid host name"),
    ],
)
def test_url_problems_name_the_trouble_and_never_the_password(url: str, problem: str) -> None:
    message = url_problem(url)
    assert message is not None and problem in message
    assert "Zq" not in message and "9x" not in message and "admin" not in message


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://admin:p%2Fss@10.0.0.5:554/stream1",
        "rtsp://admin:p@ss@10.0.0.5/x",  # '@' in a password: FFmpeg takes the last one before the path
        "rtsp://[::1]:8554/x?channel=1",
        "http://cam.local/snap.cgi?user=a@example.com",
        "sample_videos/square.mp4",
        "file:///data/x.mp4",
    ],
)
def test_good_urls_have_no_problem(url: str) -> None:
    assert url_problem(url) is None


# -- properties ----------------------------------------------------------------------------------------------------

PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp"))
SECRET_NAMES = ["pwd", "password", "passwd", "pass", "user", "usr", "username", "token", "access_token", "key",
                "apikey", "api_key", "auth", "signature", "sig", "secret", "session", "client_secret"]  # fmt: skip
PLAIN_NAMES = ["channel", "subtype", "stream", "profile", "unicast"]
SAFE = "abcdefghijklmnopqrstuvwxyz0123456789"
TEXT = st.text(SAFE + " ,;:()", max_size=12).filter(lambda t: "://" not in t)


@st.composite
def hosts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["name", "ipv4", "ipv6"]))
    if kind == "ipv4":
        return ".".join(str(draw(st.integers(0, 255))) for _ in range(4))
    if kind == "ipv6":
        return draw(st.sampled_from(["[::1]", "[fe80::1ff:fe23:4567:890a]", "[2001:db8::8]"]))
    labels = draw(st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True), min_size=1, max_size=3))
    return ".".join(labels)


@st.composite
def camera_urls(draw: st.DrawFn) -> tuple[str, str, list[str], str, str]:
    """(url, host[:port], secrets, the URL as it should come out, the part after the host)"""
    scheme = draw(st.sampled_from(["rtsp", "rtsps", "http", "https", "RTSP"]))
    secrets: list[str] = []
    userinfo = None
    if draw(st.booleans()):
        user = draw(st.text(PRINTABLE, max_size=10))
        password = draw(st.none() | st.text(PRINTABLE, min_size=1, max_size=16))
        userinfo = user if password is None else f"{user}:{password}"
        assume("://" not in userinfo)  # a password with a URL scheme in it would start a second URL in free text
        secrets += [userinfo] + ([password] if password else [])
    hostport = draw(hosts()) + draw(st.sampled_from(["", ":554", ":8554", ":80"]))
    path = draw(st.sampled_from(["", "/", "/stream1", "/Streaming/Channels/101", "/live/ch0.sdp"]))
    params: list[str] = []
    shown: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(SECRET_NAMES))
            name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
            value = draw(st.text(PRINTABLE.filter(lambda c: c not in "&#" and not c.isspace()), max_size=14))
            secrets.append(value)
            params.append(f"{name}={value}")
            shown.append(f"{name}={MASK}")
        else:
            pair = f"{draw(st.sampled_from(PLAIN_NAMES))}={draw(st.text(SAFE, max_size=4))}"
            params.append(pair)
            shown.append(pair)
    bare_question_mark = draw(st.booleans())
    query = ("?" + "&".join(params)) if params or bare_question_mark else ""
    query_shown = ("?" + "&".join(shown)) if query else ""
    fragment = draw(st.sampled_from(["", "#", "#frag", "#t=10"]))
    head = f"{scheme}://" + (f"{userinfo}@" if userinfo is not None else "")
    head_shown = f"{scheme}://" + (f"{MASK}@" if userinfo else "@" if userinfo == "" else "")
    tail = path + query + fragment
    return head + hostport + tail, hostport, secrets, head_shown + hostport + path + query_shown + fragment, tail


def _ambiguous(url: str, hostport: str, tail: str) -> bool:
    """Whether the URL also reads as a well-formed one with another host: an '@' after the host, or a password
    like '12?a=b' after a host-like user name ('rtsp://ab:12?a=b@cam/' is host 'ab', port 12 and a query)."""
    if "@" in tail:
        return True
    userinfo = url.partition("://")[2][: -len(hostport + tail) - 1]
    head, question, query = userinfo.partition("?")
    host = head.rpartition("@")[2]
    return bool(question) and "=" in query and re.fullmatch(r"[A-Za-z0-9._~%!$&'()*+,;=-]+(:[0-9]*)?", host) is not None


def _check(out: str, expected: str, case: tuple[str, str, list[str], str, str]) -> None:
    url, hostport, secrets, _, tail = case
    for secret in secrets:
        if len(secret) >= 4 and secret not in expected:
            assert secret not in out, f"{secret!r} leaked: {out!r}"
    if not _ambiguous(url, hostport, tail):  # where it is, nothing leaks either, but
        assert any(f"//{user}{hostport}" in out for user in (f"{MASK}@", "@", "")), out  # may be masked with it


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(camera_urls())
@example(("rtsp://admin:p/ss@h.example/x", "h.example", ["admin:p/ss", "p/ss"], "rtsp://***@h.example/x", "/x"))
def test_no_secret_survives_redact_url(case: tuple[str, str, list[str], str, str]) -> None:
    url, hostport, _, expected, tail = case
    out = redact_url(url)
    _check(out, expected, case)
    if not _ambiguous(url, hostport, tail) and not any(c.isspace() for c in url):
        assert out == expected
    url_problem(url)  # never raises


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(camera_urls(), TEXT, TEXT, st.sampled_from([("'", "'"), ("", ""), ('"', '"'), ("(", ")"), ("=", ",")]))
def test_no_secret_survives_scrub_of_free_text(
    case: tuple[str, str, list[str], str, str], before: str, after: str, quotes: tuple[str, str]
) -> None:
    url, _, _, expected, _ = case
    text = f"{before} {quotes[0]}{url}{quotes[1]} {after}"
    out = scrub(text)
    _check(out, f"{before} {quotes[0]}{expected}{quotes[1]} {after}", case)
    assert out.startswith(before) and out.endswith(after)
    own = scrub(text, url)  # the worker also names its own URL
    _check(own, f"{before} {quotes[0]}{expected}{quotes[1]} {after}", case)


@settings(max_examples=400, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=60) | st.text("rtsp:/@?#&=%[]:. pwd", max_size=40))
def test_nothing_raises_on_any_string(text: str) -> None:
    for out in (redact_url(text), scrub(text), scrub(text, text), scrub_any({"password": text, "x": [text]})):
        assert isinstance(out, str | dict)
    assert url_problem(text) is None or isinstance(url_problem(text), str)
