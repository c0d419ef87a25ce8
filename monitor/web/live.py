"""Live video for the camera page: the camera's H.264 remuxed, never re-encoded."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["monitor"])
