"""Reviewing many incidents quickly: episodes, a timeline across cameras, bulk review."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["monitor"])
