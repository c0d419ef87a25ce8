"""Login and logout (under /auth/, the only JSON routes open without a session), the current user, users admin."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from monitor.incident import iso
from monitor.web.auth import (
    COOKIE,
    CSRF_HEADER,
    Account,
    AccountExists,
    LoginRefused,
    User,
    admin,
    admin_write,
    auth_of,
    optional_session,
    safe_next,
)
from monitor.web.user_audit import KEEP, Action


class NoEchoRoute(APIRoute):
    """A route whose 422 answers leave out what was sent: FastAPI's default repeats each wrong value (and, for
    a missing field, the whole body), which here would send a password back into logs and proxies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
                raise HTTPException(422, detail) from None

        return route


auth_router = APIRouter(prefix="/auth", tags=["auth"], route_class=NoEchoRoute)
router = APIRouter(prefix="/api", tags=["auth"], route_class=NoEchoRoute)
UserName = Annotated[str, Path(pattern=r"^[\w.@-]{1,64}$")]


class Credentials(BaseModel):
    """What the login form sends."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    next: str | None = Field(None, max_length=2048, description="The page asked for before logging in.")


class Me(BaseModel):
    """The logged-in user and the token their page must send with every change (X-CSRF-Token header)."""

    user: str
    role: str
    csrf_token: str


class LoginResult(Me):
    """A new session, and where to go now: ``next`` if it is a path on this site, else "/"."""

    next: str


Role = Literal["viewer", "operator", "admin"]


class UserOut(BaseModel):
    """A user account (never the password hash)."""

    name: str
    role: str
    created: str | None = Field(None, description="When the account was created (unknown for older accounts).")
    changed: str | None = Field(None, description="When its role or password last changed, or it was created.")


class UserIn(BaseModel):
    """A new account needs both; an existing one changes what is given. A password: at least 12 characters, not
    a common one. Any change ends every session of that user."""

    role: Role | None = None
    password: str | None = Field(None, min_length=1, max_length=1024)


class AccountChangeOut(BaseModel):
    """One change to one account (never a password)."""

    at: str
    by: str | None = Field(description="The admin who made it; null: the command line (monitor user add).")
    action: Action
    user: str = Field(description="The account changed.")
    role: str = Field(description="Its role after the change (for 'deleted': the role it had).")
    old_role: str | None = Field(None, description="The role before a 'role_changed'.")


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@auth_router.post(
    "/login",
    responses={
        401: {"description": "Wrong credentials"},
        429: {"description": "Wait (Retry-After seconds)"},
        503: {"description": "User store (Redis) unreachable"},
    },
)
def login(request: Request, body: Credentials) -> JSONResponse:
    """Check the password and set an HttpOnly, SameSite=Strict session cookie."""
    auth = auth_of(request)
    try:
        session = auth.login(body.username, body.password, _client_ip(request))
    except LoginRefused as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        raise HTTPException(exc.status_code, str(exc), headers=headers) from None
    me = LoginResult(user=session.user.name, role=session.user.role, csrf_token=session.csrf, next=safe_next(body.next))
    response = JSONResponse(me.model_dump())
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=int(auth.session_max_s),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@auth_router.post("/logout", status_code=204)
def logout(request: Request) -> Response:
    """End the session (needs its CSRF token, so another site cannot log staff out)."""
    session = optional_session(request)
    if session is not None:
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()):
            raise HTTPException(403, "missing or wrong CSRF token")
        auth_of(request).logout(session.token)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/me", responses={401: {"description": "Not logged in"}})
def me(request: Request) -> Me:
    """Who is logged in, and the CSRF token for their changes."""
    session = optional_session(request)
    if session is None:
        raise HTTPException(401, "login required")
    return Me(user=session.user.name, role=session.user.role, csrf_token=session.csrf)


def _user_out(account: Account) -> UserOut:
    return UserOut(name=account.name, role=account.role, created=iso(account.created), changed=iso(account.changed))


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in"},
    403: {"description": "Admins only (and, for changes, the CSRF token)"},
}


@router.get("/users", responses=ADMIN_ERRORS)
def list_users(request: Request, _: Annotated[User, Depends(admin)]) -> list[UserOut]:
    """Admin: every account."""
    return [_user_out(a) for a in auth_of(request).accounts()]


@router.get("/users/audit", responses=ADMIN_ERRORS)
def account_audit(
    request: Request, _: Annotated[User, Depends(admin)], limit: Annotated[int, Query(ge=1, le=KEEP)] = 100
) -> list[AccountChangeOut]:
    """Admin: the newest account changes (creations, role changes, password resets, deletions), newest first."""
    return [
        AccountChangeOut(at=iso(c.at) or "", by=c.by, action=c.action, user=c.user, role=c.role, old_role=c.old_role)
        for c in auth_of(request).account_changes(limit)
    ]


@router.put(
    "/users/{name}",
    responses={
        **ADMIN_ERRORS,
        409: {"description": "An admin cannot take the admin role from their own account"},
        412: {"description": "'If-None-Match: *' was sent and the user exists"},
        422: {"description": "Password too short or too common; a new user without role or password"},
    },
)
def put_user(
    request: Request,
    name: UserName,
    body: UserIn,
    current: Annotated[User, Depends(admin_write)],
    if_none_match: Annotated[str | None, Header(description="'*': only create, never change an existing user")] = None,
) -> UserOut:
    """Admin: create an account, or change its role, password or both; the user's existing sessions end."""
    if name == current.name and body.role not in (None, "admin"):
        raise HTTPException(409, "you cannot take the admin role from your own account: another admin can")
    auth = auth_of(request)
    try:
        user = auth.save_user(
            name, role=body.role, password=body.password, by=current.name, create_only=if_none_match == "*"
        )
    except AccountExists as exc:
        raise HTTPException(412, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    saved = auth.accounts([user.name])
    return _user_out(saved[0]) if saved else UserOut(name=user.name, role=user.role)  # deleted meanwhile


@router.delete("/users/{name}", status_code=204, responses={**ADMIN_ERRORS, 404: {}, 409: {}})
def delete_user(request: Request, name: UserName, current: Annotated[User, Depends(admin_write)]) -> Response:
    """Admin: remove an account (not your own); its sessions end at once."""
    if name == current.name:
        raise HTTPException(409, "you cannot delete your own account: another admin can")
    if not auth_of(request).delete_user(name, by=current.name):
        raise HTTPException(404, "no such user")
    return Response(status_code=204)
