"""Login and logout (under /auth/, the only JSON routes open without a session), the current user, users admin."""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

import redis
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from monitor.web.auth import (
    COOKIE,
    CSRF_HEADER,
    UNAVAILABLE,
    LoginRefused,
    User,
    admin,
    admin_write,
    auth_of,
    optional_session,
    safe_next,
)

auth_router = APIRouter(prefix="/auth", tags=["auth"])
router = APIRouter(prefix="/api", tags=["auth"])
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


class UserOut(BaseModel):
    """A user account (never the password hash)."""

    name: str
    role: str


class UserIn(BaseModel):
    """Create a user or reset their role and password (at least 12 characters, not a common password); any
    change ends every session of that user."""

    role: Literal["viewer", "operator", "admin"]
    password: str = Field(min_length=1, max_length=1024)


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
    except redis.RedisError:
        raise HTTPException(503, UNAVAILABLE) from None
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


@router.get("/users", responses={401: {"description": "Not logged in"}, 403: {"description": "Admins only"}})
def list_users(request: Request, _: Annotated[User, Depends(admin)]) -> list[UserOut]:
    """Admin: every account."""
    return [UserOut(name=u.name, role=u.role) for u in auth_of(request).list_users()]


@router.put(
    "/users/{name}",
    responses={
        401: {"description": "Not logged in"},
        403: {"description": "Admins only"},
        422: {"description": "Password too short or too common"},
    },
)
def put_user(request: Request, name: UserName, body: UserIn, _: Annotated[User, Depends(admin_write)]) -> UserOut:
    """Admin: create an account or reset its role and password; the user's existing sessions end."""
    try:
        user = auth_of(request).add_user(name, body.role, body.password, check_password=True)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return UserOut(name=user.name, role=user.role)


@router.delete(
    "/users/{name}",
    status_code=204,
    responses={401: {"description": "Not logged in"}, 403: {"description": "Admins only"}, 404: {}},
)
def delete_user(request: Request, name: UserName, current: Annotated[User, Depends(admin_write)]) -> Response:
    """Admin: remove an account (not your own); its sessions end at once."""
    if name == current.name:
        raise HTTPException(409, "you cannot delete your own account")
    if not auth_of(request).delete_user(name):
        raise HTTPException(404, "no such user")
    return Response(status_code=204)
