"""Notification targets (webhook, DingTalk, WeCom robots), validated at config load.

Robot URLs carry their access token in the query string, so the URL is a secret just like the signing
secret: both are ``SecretStr`` (masked in repr, str() and JSON dumps) and logs use ``NotifierConfig.target``.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

NotifyEvent = Literal["opened", "closed"]


class _NotifierBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: SecretStr = Field(
        description="http(s) URL messages are POSTed to; robot URLs include their access token, so it is kept secret."
    )
    secret: SecretStr | None = Field(
        None, description="Shared signing secret (use ${ENV_VAR} in the config file); never logged or shown."
    )
    events: tuple[NotifyEvent, ...] = Field(
        ("opened", "closed"), min_length=1, description="Incident transitions that send a message."
    )
    kinds: tuple[str, ...] | None = Field(
        None, description="Only incidents of these kinds (e.g. gathering, camera_offline); null = all kinds."
    )
    base_url: str | None = Field(
        None, description="Public address of the center's web page; messages then link to the incident page."
    )
    timeout_s: float = Field(5.0, gt=0, le=60, description="Seconds to wait for one HTTP request.")
    max_attempts: int = Field(6, ge=1, le=20, description="Attempts per message before it is given up.")
    backoff_s: float = Field(1.0, gt=0, le=60, description="Wait before the first retry; doubled on each retry.")
    backoff_max_s: float = Field(60.0, gt=0, le=3600, description="Longest wait between two attempts.")

    @field_validator("url", "secret", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        """Reject non-text as a value error, which config error messages never echo (the input is secret)."""
        if value is not None and not isinstance(value, str | SecretStr):
            raise ValueError("must be a string (quote it in YAML)")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")  # the URL itself is not echoed: it is secret
        return value

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return None if value is None else value.rstrip("/")

    @property
    def target(self) -> str:
        """``kind:host`` for logs and metrics, free of tokens and secrets."""
        kind: str = getattr(self, "kind")  # noqa: B009 (set on every subclass)
        return f"{kind}:{urlsplit(self.url.get_secret_value()).hostname}"


class WebhookConfig(_NotifierBase):
    """Generic JSON webhook; with ``secret`` each request carries an HMAC-SHA256 signature header."""

    kind: Literal["webhook"] = Field(description="Generic JSON webhook.")


class DingTalkConfig(_NotifierBase):
    """DingTalk group robot; with ``secret`` the URL is signed (the robot's "加签" security setting)."""

    kind: Literal["dingtalk"] = Field(description="DingTalk (钉钉) group robot.")
    at_mobiles: tuple[str, ...] = Field((), description="Mobile numbers to @-mention in the group.")
    at_all: bool = Field(False, description="@-mention everyone in the group.")


class WeComConfig(_NotifierBase):
    """WeCom group robot (the key is in the URL; WeCom robots have no signing secret)."""

    kind: Literal["wecom"] = Field(description="WeCom (企业微信) group robot.")
    secret: None = Field(
        None, description="Not used: WeCom robots are not signed; the key in the URL is the credential."
    )


NotifierConfig = Annotated[WebhookConfig | DingTalkConfig | WeComConfig, Field(discriminator="kind")]
