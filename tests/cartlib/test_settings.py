from __future__ import annotations

import pytest
from pydantic import ValidationError

from cartlib.settings import Settings

GOOD_SECRET = "g" * 40


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CART_TOKEN_SECRET", GOOD_SECRET)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.cart_ttl_seconds == 7 * 24 * 3600
    assert settings.cart_max_quantity == 99
    assert settings.admin_token is None
    assert settings.redis_connect_timeout <= 1.0
    assert settings.redis_socket_timeout <= 1.0


def test_environment_names_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "CART_TOKEN_SECRET": GOOD_SECRET,
        "REDIS_URL": "rediss://:pw@redis.example:6380/2",
        "ADMIN_TOKEN": "a" * 40,
        "CART_TTL_SECONDS": "3600",
        "HOST": "127.0.0.1",
        "PORT": "9000",
        "LOG_LEVEL": "debug",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.redis_url.get_secret_value() == "rediss://:pw@redis.example:6380/2"
    assert settings.admin_token is not None
    assert (settings.cart_ttl_seconds, settings.host, settings.port, settings.log_level) == (
        3600,
        "127.0.0.1",
        9000,
        "debug",
    )


def test_secrets_never_show_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CART_TOKEN_SECRET", GOOD_SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-password@redis:6379/0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert GOOD_SECRET not in repr(settings)
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CART_TOKEN_SECRET", "changeme"),
        ("CART_TOKEN_SECRET", "short"),
        ("ADMIN_TOKEN", "password"),
        ("CART_TTL_SECONDS", "0"),
        ("CART_MAX_QUANTITY", "-1"),
        ("PORT", "70000"),
        ("LOG_LEVEL", "loud"),
        ("REDIS_KEY_PREFIX", "has spaces"),
    ],
)
def test_bad_values_are_refused_with_their_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("CART_TOKEN_SECRET", GOOD_SECRET)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_token_secret_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CART_TOKEN_SECRET", raising=False)
    with pytest.raises(ValidationError, match="cart_token_secret"):
        Settings(_env_file=None)  # type: ignore[call-arg]
