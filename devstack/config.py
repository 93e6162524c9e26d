"""What `make run` starts with: the environment first, then `.env`, read by pydantic-settings,
as the services read theirs (so a quoted or commented value means the same to both)."""

from __future__ import annotations

import secrets
from typing import Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from devstack.processes import REPO, StartupError


class StackConfig(BaseSettings):
    """REDIS_URL unset: a private Redis. Secrets unset: generated for this run."""

    model_config = SettingsConfigDict(
        env_file=REPO / ".env", env_ignore_empty=True, extra="ignore", case_sensitive=False
    )

    redis_url: str | None = None
    cart_token_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(32))
    admin_token: str | None = None
    log_level: str = "info"
    inventory_port: int = Field(default=8001, ge=1, le=65535)
    checkout_port: int = Field(default=8002, ge=1, le=65535)

    @model_validator(mode="after")
    def _distinct_ports(self) -> Self:
        if self.inventory_port == self.checkout_port:
            raise ValueError(f"INVENTORY_PORT and CHECKOUT_PORT are both {self.checkout_port}")
        return self


def load_config() -> tuple[StackConfig, str, bool]:
    """The configuration, the admin token and whether it was generated for this run."""
    try:
        config = StackConfig()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])).upper() or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise StartupError(problems) from None
    if config.admin_token:
        return config, config.admin_token, False
    return config, secrets.token_urlsafe(32), True
