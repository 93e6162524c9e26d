"""Configuration: one `Settings` class read from the environment (and a `.env` file)."""

from __future__ import annotations

import functools
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_PLACEHOLDER_SECRETS = frozenset({"changeme", "changethis", "secret", "password"})

LogLevel = Literal["debug", "info", "warning", "error", "critical"]

SentinelAddress = tuple[str, int]


def parse_sentinel_addresses(value: str) -> tuple[SentinelAddress, ...]:
    """`"host:port,host:port"` as ((host, port), ...); `"[::1]:26379"` for an IPv6 address.

    Raises ValueError naming the first malformed entry.
    """
    addresses: list[SentinelAddress] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        host, colon, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"{entry!r} is not host:port (expected e.g. "
                "'redis-0.redis:26379,redis-1.redis:26379')"
            )
        addresses.append((host, int(port)))
    return tuple(addresses)


class Settings(BaseSettings):
    """Every knob of a storefront process. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", case_sensitive=False
    )

    host: str = "0.0.0.0"
    # None means "the service's own default port" (inventory 8001, checkout 8002).
    port: int | None = Field(default=None, ge=1, le=65535)
    log_level: LogLevel = "info"
    web_concurrency: int = Field(default=1, ge=1, le=64)
    # Where the workers keep their metric files when WEB_CONCURRENCY > 1; unset: a new
    # directory under /tmp per start (see cartlib.web.metrics.use_multiprocess_dir).
    prometheus_multiproc_dir: str | None = None

    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    redis_connect_timeout: float = Field(default=1.0, gt=0, le=30)
    redis_socket_timeout: float = Field(default=1.0, gt=0, le=30)
    # Only connection errors are retried: a command that timed out may have run, and
    # running a cart increment twice would be a lost-update bug of its own.
    redis_retries: int = Field(default=2, ge=0, le=10)
    redis_backoff_base: float = Field(default=0.05, gt=0, le=5)
    redis_backoff_cap: float = Field(default=0.5, gt=0, le=30)
    # Above the concurrent requests one worker takes: redis-py's blocking pool lets a newcomer
    # take a freed connection before a waiter, so a pool smaller than the concurrency made
    # some requests wait past REDIS_POOL_TIMEOUT (bench/README.md).
    redis_max_connections: int = Field(default=256, ge=1, le=10_000)
    # How long a request waits for a free pooled connection before answering 503.
    redis_pool_timeout: float = Field(default=1.0, gt=0, le=30)
    redis_key_prefix: str = Field(default="sf:", pattern=r"^[A-Za-z0-9:_.-]{0,32}$")
    # The password of the Redis servers. Overrides one inside REDIS_URL (the chart sets both
    # to the same value in standalone mode), and is the only one used with Sentinel.
    redis_password: SecretStr | None = None

    # Sentinel mode: empty means standalone at REDIS_URL. NoDecode: a comma-separated list,
    # not the JSON that pydantic-settings expects of a sequence.
    redis_sentinels: Annotated[tuple[SentinelAddress, ...], NoDecode] = ()
    redis_sentinel_master: str = Field(default="storefront", min_length=1)
    redis_sentinel_password: SecretStr | None = None

    # Cluster mode: seed nodes of a Redis Cluster (or Valkey cluster), comma-separated
    # host:port; empty means standalone or Sentinel. The client learns the other nodes and
    # the slots from them (see docs/redis-cluster.md for the key layout and the checkout protocol).
    redis_cluster_nodes: Annotated[tuple[SentinelAddress, ...], NoDecode] = ()

    # Durability of paid orders: a checkout is acknowledged only after WAIT confirms this many
    # replicas have it. None means 1 with Sentinel or a cluster (a failover must not lose an
    # acknowledged order), 0 standalone (there is no replica to wait for).
    redis_wait_replicas: int | None = Field(default=None, ge=0, le=16)
    # Below the socket timeout, so a WAIT that runs out answers "too few replicas" rather
    # than a socket timeout. 0 would mean "wait forever" to Redis: refused.
    redis_wait_timeout_ms: int = Field(default=500, ge=1, le=30_000)

    cart_token_secret: SecretStr
    # Verified session tokens kept per process; more active sessions than this, used in turn,
    # would each be decoded again on every request (docs/configuration.md).
    cart_token_cache_size: int = Field(default=32_768, ge=0, le=1_000_000)
    admin_token: SecretStr | None = None
    cart_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    cart_max_quantity: int = Field(default=99, ge=1, le=1_000_000)
    cart_max_lines: int = Field(default=200, ge=1, le=100_000)

    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # How long a checkout may hold reserved stock before payment is given up on.
    checkout_timeout_seconds: int = Field(default=60, ge=5, le=3600)
    # Declined checkouts a session may have within the window before it gets 429: each
    # holds its cart's units for a payment call, and leaves its key's 402 for a day.
    checkout_max_declines: int = Field(default=5, ge=0, le=1000)
    checkout_decline_window_seconds: int = Field(default=600, ge=1, le=24 * 3600)
    orders_stream_maxlen: int = Field(default=100_000, ge=1000)
    catalog_cache_ttl_seconds: float = Field(default=5.0, gt=0, le=3600)
    catalog_file: str | None = None

    max_body_bytes: int = Field(default=16 * 1024, ge=1024, le=16 * 1024 * 1024)
    # What one client can hold of a process (cartlib.web.http_limits): the request line and
    # headers, how long a request may take to arrive, and the connections held open at once.
    http_max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    http_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Longer than clients and proxies keep an idle connection, so that they close it first: a
    # request sent on a connection the server is closing is lost between the two.
    http_keep_alive_timeout_seconds: int = Field(default=75, ge=1, le=3600)
    http_max_connections: int = Field(default=1024, ge=1, le=100_000)

    @field_validator("redis_sentinels", "redis_cluster_nodes", mode="before")
    @classmethod
    def _parse_sentinels(cls, value: object) -> object:
        return parse_sentinel_addresses(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _resolve_durability(self) -> Self:
        if self.redis_sentinels and self.redis_cluster_nodes:
            raise ValueError(
                "REDIS_SENTINELS and REDIS_CLUSTER_NODES are both set: choose one (a Redis "
                "Cluster fails over by itself and has no sentinels)"
            )
        if self.redis_wait_replicas is None:
            # A cluster master has replicas, as a Sentinel master has.
            self.redis_wait_replicas = 1 if self.redis_sentinels or self.redis_cluster_nodes else 0
        if self.redis_wait_timeout_ms >= self.redis_socket_timeout * 1000:
            raise ValueError(
                f"redis_wait_timeout_ms ({self.redis_wait_timeout_ms}) must be below "
                f"REDIS_SOCKET_TIMEOUT ({self.redis_socket_timeout} s), or a WAIT that runs "
                "out looks like a Redis timeout"
            )
        return self

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.redis_sentinels)

    @property
    def uses_cluster(self) -> bool:
        return bool(self.redis_cluster_nodes)

    @property
    def wait_replicas(self) -> int:
        """REDIS_WAIT_REPLICAS with its default resolved (see `_resolve_durability`)."""
        return self.redis_wait_replicas or 0

    @field_validator("cart_token_secret", "admin_token")
    @classmethod
    def _refuse_weak_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret.lower() in _PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; generate one, e.g. `openssl rand -base64 32`")
        if len(secret) < 32:
            # HS256 keys shorter than the hash output are brute-forceable (RFC 7518 3.2).
            raise ValueError("must be at least 32 characters")
        return value


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()  # type: ignore[call-arg]  # required fields come from the environment
