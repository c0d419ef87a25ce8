"""The users page and its API, tried as an attacker would (and used as an admin would) against the real server.

Lower roles cannot read or change accounts or their trail, writes need the CSRF token, weak passwords are refused in
words, no password (or hash) ever comes back or lands in the trail, an admin cannot demote or delete themselves, and
every account change is kept with who made it. The browser test drives the page in headless Chromium.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from monitor.web import user_audit
from monitor.web.auth import Auth
from monitor.web.cli import add_user
from tests.support.browser import login, until
from tests.support.web import PASSWORDS, Site

GOOD = "violet-harbour-lantern-87"
OTHER = "quiet-meadow-copper-kite"


@pytest.fixture
def site(shared_media_site: Site) -> Site:
    """This module's tests share one cut of the media."""
    return shared_media_site


def _trail(site: Site) -> list[tuple[str | None, str, str]]:
    """(by, action, user) of every account change, newest first, as the admin's API lists them (the site starts
    with admin, oper and view created through ``Auth`` as ``monitor user add`` does: by None, the command line)."""
    return [(c["by"], c["action"], c["user"]) for c in site.login("admin").get("/api/users/audit").json()]


def _accounts(site: Site) -> dict[str, str]:
    return {u["name"]: u["role"] for u in site.login("admin").get("/api/users").json()}


# --- 1. who may do what


def test_viewers_operators_and_strangers_can_neither_read_nor_change_accounts(site: Site) -> None:
    before_accounts, before_trail = _accounts(site), _trail(site)
    for who in ("view", "oper"):
        http = site.login(who)
        assert http.get("/api/users").status_code == 403
        assert http.get("/api/users/audit").status_code == 403
        assert http.put(f"/api/users/{who}", json={"role": "admin"}).status_code == 403  # promote oneself
        assert http.put("/api/users/mallory", json={"role": "admin", "password": GOOD}).status_code == 403
        assert http.put("/api/users/admin", json={"password": GOOD}).status_code == 403  # take the admin over
        assert http.delete("/api/users/admin").status_code == 403
        assert http.get("/api/me").json()["role"] == {"view": "viewer", "oper": "operator"}[who]
    anonymous = site.anonymous()
    assert anonymous.get("/api/users").status_code == 401
    assert anonymous.get("/api/users/audit").status_code == 401
    assert anonymous.put("/api/users/mallory", json={"role": "admin", "password": GOOD}).status_code == 401
    assert anonymous.delete("/api/users/view").status_code == 401
    assert _accounts(site) == before_accounts and _trail(site) == before_trail


def test_account_changes_without_the_admins_csrf_token_are_refused(site: Site) -> None:
    admin = site.login("admin")
    token = admin.headers.pop("X-CSRF-Token")
    operator_token = site.login("oper").headers["X-CSRF-Token"]
    for headers in ({}, {"X-CSRF-Token": token[:-1] + "x"}, {"X-CSRF-Token": operator_token}):
        res = admin.put("/api/users/mallory", json={"role": "admin", "password": GOOD}, headers=headers)
        assert res.status_code == 403 and "CSRF" in res.json()["detail"]
        assert admin.put("/api/users/view", json={"role": "admin"}, headers=headers).status_code == 403
        assert admin.delete("/api/users/oper", headers=headers).status_code == 403
    assert _accounts(site) == {"admin": "admin", "oper": "operator", "view": "viewer"}
    assert _trail(site) == [(None, "created", name) for name in ("view", "oper", "admin")]


def test_an_admin_cannot_demote_or_delete_themselves_but_another_admin_can(site: Site) -> None:
    admin, before = site.login("admin"), _trail(site)
    for role in ("operator", "viewer"):
        res = admin.put("/api/users/admin", json={"role": role})
        assert res.status_code == 409 and "your own account" in res.json()["detail"]
    res = admin.delete("/api/users/admin")
    assert res.status_code == 409 and "your own account" in res.json()["detail"]
    assert admin.get("/api/me").json()["role"] == "admin" and _trail(site) == before

    assert admin.put("/api/users/root2", json={"role": "admin", "password": GOOD}).status_code == 200
    other = site.login("root2", GOOD)
    assert other.put("/api/users/admin", json={"role": "operator"}).json()["role"] == "operator"
    assert admin.get("/api/me").status_code == 401  # the demotion ended the old admin's session
    assert other.delete("/api/users/admin").status_code == 204
    assert {u["name"]: u["role"] for u in other.get("/api/users").json()} == {
        "oper": "operator",
        "root2": "admin",
        "view": "viewer",
    }


# --- 2. passwords: refused in words, never sent back, never kept in the trail


def test_unfit_requests_are_refused_in_words_without_repeating_the_password(site: Site) -> None:
    admin = site.login("admin")
    long_secret = "leaked-" + "x" * 1100  # over the 1024-character limit: FastAPI's own 422 would echo it
    cases: list[tuple[dict[str, Any], str]] = [
        ({"role": "viewer", "password": "password1234"}, "too common"),
        ({"role": "viewer", "password": "short-pw"}, "at least 12 characters"),
        ({"role": "viewer", "password": "eve-eve-eve-"}, "too common"),
        ({"role": "viewer"}, "a new user needs a role and a password"),
        ({"password": GOOD}, "a new user needs a role and a password"),
        ({"role": "root", "password": GOOD}, "Input should be 'viewer', 'operator' or 'admin'"),
        ({"role": "viewer", "password": long_secret}, "at most 1024 characters"),
        ({"role": "viewer", "password": ""}, "at least 1 character"),
    ]
    for body, why in cases:
        res = admin.put("/api/users/eve", json=body)
        assert res.status_code == 422, (body, res.text)
        detail = res.json()["detail"]
        text = detail if isinstance(detail, str) else " ".join(f"{d['loc']} {d['msg']}" for d in detail)
        assert why in text, (body, text)
        assert '"input"' not in res.text and (not body.get("password") or body["password"] not in res.text)
    json_body = {"Content-Type": "application/json"}
    for sent in (json.dumps(GOOD), json.dumps([GOOD]), '{"password": "' + GOOD + '"'):  # no object; broken JSON
        res = admin.put("/api/users/eve", content=sent, headers=json_body)
        assert res.status_code == 422 and GOOD not in res.text, res.text  # the body is not echoed either
    login = site.anonymous().post("/auth/login", json={"username": "admin", "password": long_secret})
    assert login.status_code == 422 and "leaked-" not in login.text  # the login form does not echo either
    assert "eve" not in _accounts(site) and len(_trail(site)) == 3


def test_no_password_or_hash_leaves_the_server_or_enters_the_trail(site: Site) -> None:
    admin = site.login("admin")
    responses = [
        admin.put("/api/users/kim", json={"role": "operator", "password": GOOD}),
        admin.put("/api/users/kim", json={"password": OTHER}),
        admin.put("/api/users/kim", json={"role": "viewer", "password": GOOD}),
        site.anonymous().post("/auth/login", json={"username": "kim", "password": GOOD}),
        admin.get("/api/users"),
        admin.get("/api/users/audit"),
        admin.get("/openapi.json"),
        admin.delete("/api/users/kim"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 200, 200, 204]
    for res in responses:
        seen = res.text + json.dumps(dict(res.headers))
        assert GOOD not in seen and OTHER not in seen and "scrypt$" not in seen, res.request.url
    entries = [json.loads(raw) for raw in site.client.lrange(user_audit.KEY, 0, -1)]  # Redis itself
    stored = json.dumps(entries, ensure_ascii=False)
    assert "kim" in stored
    assert GOOD not in stored and OTHER not in stored and "scrypt" not in stored and 'password"' not in stored


# --- 3. the trail: who did what to which account, from the page and from the command line


def test_every_account_change_is_kept_with_who_made_it(site: Site) -> None:
    admin = site.login("admin")
    assert admin.put("/api/users/张三", json={"role": "operator", "password": GOOD}).status_code == 200
    zhang = site.login("张三", GOOD)
    assert admin.put("/api/users/张三", json={"role": "operator"}).status_code == 200  # no change: nothing kept
    assert zhang.get("/api/me").status_code == 200  # ... and the session goes on
    assert admin.put("/api/users/张三", json={"role": "viewer"}).json()["role"] == "viewer"
    assert zhang.get("/api/me").status_code == 401  # a role change alone ends the session
    zhang = site.login("张三", GOOD)  # ... and keeps the password
    assert admin.put("/api/users/张三", json={"password": OTHER}).status_code == 200
    assert zhang.get("/api/me").status_code == 401
    add_user(site.client, "张三", "admin", GOOD)  # what `monitor user add 张三 --role admin` does
    assert admin.delete("/api/users/张三").status_code == 204
    assert admin.delete("/api/users/张三").status_code == 404  # nothing left to delete: nothing kept

    changes = admin.get("/api/users/audit").json()[:-3]  # the site's own three users come first
    assert [(c["by"], c["action"], c["user"], c["role"], c["old_role"]) for c in changes] == [
        ("admin", "deleted", "张三", "admin", None),
        (None, "password_reset", "张三", "admin", None),  # None: the command line
        (None, "role_changed", "张三", "admin", "viewer"),
        ("admin", "password_reset", "张三", "viewer", None),
        ("admin", "role_changed", "张三", "viewer", "operator"),
        ("admin", "created", "张三", "operator", None),
    ]
    times = [c["at"] for c in changes]
    assert times == sorted(times, reverse=True) and all(re.match(r"\d{4}-\d\d-\d\dT", t) for t in times)
    assert [c["action"] for c in admin.get("/api/users/audit", params={"limit": 2}).json()] == [
        "deleted",
        "password_reset",
    ]
    assert admin.get("/api/users/audit", params={"limit": 0}).status_code == 422


def test_the_trail_keeps_only_the_newest_entries(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_audit, "KEEP", 5)
    auth = Auth(site.client)
    for i in range(4):
        auth.save_user(f"temp{i}", role="viewer", password=f"{GOOD}-{i}", by="admin")
        auth.delete_user(f"temp{i}", by="admin")
    assert site.client.llen(user_audit.KEY) == 5
    kept = [(c.action, c.user) for c in auth.account_changes()]
    assert kept == [("deleted", "temp3"), ("created", "temp3"), ("deleted", "temp2"), ("created", "temp2"),
                    ("deleted", "temp1")]  # fmt: skip


def test_the_users_list_says_when_each_account_was_created_and_last_changed(site: Site) -> None:
    admin = site.login("admin")
    created = admin.put("/api/users/kim", json={"role": "viewer", "password": GOOD}).json()
    assert created["created"] == created["changed"] is not None
    changed = admin.put("/api/users/kim", json={"role": "operator"}).json()
    assert changed["created"] == created["created"] and changed["changed"] > created["changed"]
    assert next(u for u in admin.get("/api/users").json() if u["name"] == "kim") == changed
    assert set(changed) == {"name", "role", "created", "changed"}  # never the hash


def test_create_only_never_resets_an_existing_account(site: Site) -> None:
    admin, before = site.login("admin"), _trail(site)
    res = admin.put("/api/users/oper", json={"role": "admin", "password": GOOD}, headers={"If-None-Match": "*"})
    assert res.status_code == 412 and "already exists" in res.json()["detail"]
    assert site.login("oper").get("/api/me").json()["role"] == "operator"  # the old password still works
    assert _trail(site) == before
    res = admin.put("/api/users/new1", json={"role": "viewer", "password": GOOD}, headers={"If-None-Match": "*"})
    assert res.status_code == 200 and _trail(site) == [("admin", "created", "new1"), *before]


# --- 4. the page


@pytest.mark.slow
def test_admin_manages_an_operator_on_the_users_page(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = login(browser, site, "admin", PASSWORDS["admin"], "/users")
    expect(page.locator("#nav-users")).to_be_visible()
    rows = page.locator("#users tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator('tr[data-user="admin"].own .you')).to_contain_text("you")

    # adding: the server's reasons, in words
    page.fill("#new-name", "wang")
    page.select_option("#new-role", "operator")
    page.fill("#new-password", "password1234")
    page.fill("#new-password2", "password1234")
    page.click("#add-button")
    expect(page.locator("#add-message")).to_contain_text("too common")
    page.fill("#new-password", "")
    page.fill("#new-password2", "")
    page.click("#add-button")
    expect(page.locator("#add-message")).to_contain_text("password: String should have at least 1 character")
    expect(page.locator("#add-message")).not_to_contain_text("HTTP")
    page.fill("#new-password", GOOD)
    page.fill("#new-password2", GOOD + "!")
    page.click("#add-button")
    expect(page.locator("#add-message")).to_contain_text("differ")
    page.fill("#new-password2", GOOD)
    page.click("#add-button")
    wang = page.locator('#users tr[data-user="wang"]')
    expect(wang).to_have_attribute("data-role", "operator")
    expect(page.locator("#add-message")).to_contain_text("added")
    assert page.input_value("#new-password") == ""

    # the new operator logs in elsewhere: no users link, and the page says admins only
    operator = login(browser, site, "wang", GOOD, "/users")
    expect(operator.locator("#admins-only")).to_be_visible()
    expect(operator.locator("#admins-only")).to_contain_text("仅管理员")
    expect(operator.locator("#users-admin")).to_be_hidden()
    expect(operator.locator("#nav-users")).to_be_hidden()
    operator.screenshot(path=str(tmp_path / "users-operator.png"))
    until(operator, "document.getElementById('me').textContent.includes('wang')")

    # demoted to viewer: the operator's session ends, the next call goes to the login page
    wang.locator(".role-select").select_option("viewer")
    wang.locator(".save-role").click()
    expect(page.locator('#users tr[data-user="wang"]')).to_have_attribute("data-role", "viewer")
    expect(page.locator("#users-message")).to_contain_text("role changed")
    operator.evaluate("() => { VM.api('/api/cameras').catch(() => null); }")
    operator.wait_for_url(re.compile(r"/login\?next=%2Fusers$"))

    # the admin cannot demote or delete their own account: the server says so, the page shows it
    me = page.locator('#users tr[data-user="admin"]')
    me.locator(".role-select").select_option("operator")
    me.locator(".save-role").click()
    expect(me.locator(".row-message")).to_contain_text("your own account")
    expect(me.locator(".role-select")).to_have_value("admin")  # the row shows the role it kept
    me.locator(".delete").click()
    me.locator(".confirm-delete .confirm").click()
    expect(me.locator(".row-message")).to_contain_text("cannot delete your own account")
    me.locator(".confirm-delete .cancel").click()

    # password reset, inline
    wang = page.locator('#users tr[data-user="wang"]')
    wang.locator(".reset").click()
    wang.locator(".reset-form .pw").fill(OTHER)
    wang.locator(".reset-form .pw2").fill(OTHER)
    page.screenshot(path=str(tmp_path / "users-reset.png"))
    wang.locator(".reset-form button[type=submit]").click()
    expect(page.locator("#users-message")).to_contain_text("password reset")
    assert site.anonymous().post("/auth/login", json={"username": "wang", "password": GOOD}).status_code == 401
    login(browser, site, "wang", OTHER, "/").context.close()

    # delete, with a confirmation step
    wang = page.locator('#users tr[data-user="wang"]')
    wang.locator(".delete").click()
    expect(wang.locator(".confirm-delete")).to_contain_text("wang")
    page.set_viewport_size({"width": 420, "height": 900})
    page.screenshot(path=str(tmp_path / "users-confirm-narrow.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    page.set_viewport_size({"width": 1280, "height": 900})
    assert site.login("admin").get("/api/users").json()[-1]["name"] == "wang"  # not yet
    wang.locator(".confirm-delete .confirm").click()
    expect(page.locator('#users tr[data-user="wang"]')).to_have_count(0)
    expect(rows).to_have_count(3)

    # the trail lists it all, newest first, in words (after the site's three users, made on the command line)
    expect(page.locator("#user-audit tbody tr")).to_have_count(7)
    expect(page.locator('#user-audit tr[data-user="view"]')).to_contain_text("命令行 command line")
    trail = page.locator('#user-audit tbody tr[data-user="wang"]')
    expect(trail).to_have_count(4)
    assert [trail.nth(i).get_attribute("data-action") for i in range(4)] == [
        "deleted",
        "password_reset",
        "role_changed",
        "created",
    ]
    expect(trail.nth(2)).to_contain_text("值班员 operator → 查看 viewer")
    expect(trail.nth(3)).to_contain_text("创建 created")
    for i in range(4):
        expect(trail.nth(i)).to_contain_text("admin")
        expect(trail.nth(i)).to_contain_text("wang")
    assert GOOD not in page.content() and OTHER not in page.content()
    page.screenshot(path=str(tmp_path / "users.png"), full_page=True)
    operator.context.close()
    page.context.close()
