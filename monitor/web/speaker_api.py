"""Speakers on the page: checked health, last announcement result, operator test."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["monitor"])
