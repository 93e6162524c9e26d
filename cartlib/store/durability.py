"""Writes confirmed on replicas: a Lua script and `WAIT` in one round trip.

`WAIT numreplicas timeout` answers how many replicas have acknowledged every write *this
connection* made so far, so it has to follow the write on the same connection. A
non-transactional pipeline sends both at once on one pooled connection: still one round
trip. (Inside MULTI, WAIT would not block, so this is not a transaction.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import AskError, NoScriptError, TryAgainError

from cartlib.store.redis import REDIS_ERRORS, call
from cartlib.store.scripts import LuaScript, Prelude, ScriptArg, source


class ReplicatedWrites:
    """Runs writes followed by `WAIT replicas timeout_ms` in the same round trip, and says how
    many replicas acknowledged them (fewer than `replicas` when `timeout_ms` ran out)."""

    def __init__(self, redis: Redis, *, replicas: int, timeout_ms: int) -> None:
        self.replicas = replicas
        self.redis = redis
        self._timeout_ms = timeout_ms

    def script(self, name: str, *, prelude: Prelude = None) -> ReplicatedScript:
        return ReplicatedScript(self, name, prelude=prelude)

    async def execute(self, pipe: Pipeline) -> tuple[list[Any], int]:
        """Send the queued writes and WAIT; their replies, and the replicas that have them."""
        pipe.wait(self.replicas, self._timeout_ms)
        *replies, acknowledged = await pipe.execute()
        return replies, int(acknowledged)

    async def rewrite(self, key: str, value: bytes) -> int:
        """Write `value` (what `key` already holds) again; how many replicas have it.

        For a response read back rather than written now: WAIT covers only this connection's
        own writes, so one is needed, and a replica that acknowledges it has everything the
        master held before it, the earlier write of `value` included. XX: an expired key is
        not recreated; KEEPTTL: its TTL is kept.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, value, xx=True, keepttl=True)
        result: tuple[list[Any], int] = await call("SET+WAIT", self.execute(pipe))
        return result[1]


class ReplicatedScript:
    """One Lua script (a `.lua` file of cartlib.store.scripts) run by SHA, then WAIT, in one round
    trip. Timed as `script:<name>`, WAIT included."""

    def __init__(self, writes: ReplicatedWrites, name: str, *, prelude: Prelude = None) -> None:
        self.replicas = writes.replicas
        self._writes = writes
        self._label = f"script:{name}"
        self._script = writes.redis.register_script(source(name, prelude))

    async def __call__(self, keys: Sequence[str], args: Sequence[ScriptArg]) -> tuple[Any, int]:
        """The script's reply, and how many replicas acknowledged its writes."""
        result: tuple[Any, int] = await call(self._label, self._run(keys, args))
        return result

    async def _run(self, keys: Sequence[str], args: Sequence[ScriptArg]) -> tuple[Any, int]:
        try:
            return await self._send(keys, args)
        except NoScriptError:
            # A restarted, flushed or newly promoted Redis lacks the script. Loading it costs a
            # round trip only then; redis-py's own pipeline scripts would instead send
            # SCRIPT EXISTS before every pipeline.
            await self._writes.redis.script_load(self._script.script)
            return await self._send(keys, args)

    async def _send(self, keys: Sequence[str], args: Sequence[ScriptArg]) -> tuple[Any, int]:
        pipe = self._writes.redis.pipeline(transaction=False)
        pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        (reply,), acknowledged = await self._writes.execute(pipe)
        return reply, acknowledged


class ConfirmedScript:
    """A script of a step that must reach a replica before it is acknowledged: run with
    `WAIT` when `writes` wants replicas (`ReplicatedScript`), else plainly (`LuaScript`)."""

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        prelude: Prelude = None,
        writes: ReplicatedWrites | None = None,
    ) -> None:
        self._plain = LuaScript(redis, name, prelude=prelude)
        self._replicated = writes.script(name, prelude=prelude) if writes else None

    async def __call__(self, keys: Sequence[str], args: Sequence[ScriptArg]) -> tuple[Any, bool]:
        """The script's reply, and whether enough replicas acknowledged its writes."""
        if self._replicated is None:
            return await self._plain(keys, args), True
        reply, acknowledged = await self._replicated(keys, args)
        return reply, acknowledged >= self._replicated.replicas


NodeClient = Callable[[str, int], Redis]


class ClusterReplicatedWrites(ReplicatedWrites):
    """`ReplicatedWrites` on a cluster: the writes and WAIT go, pipelined, on one connection
    to the master that owns the key's slot.

    redis-py's cluster client sends a keyless WAIT to every master on a connection of each,
    which would count no write of ours; so each master gets a plain client of its own
    (`node_client(host, port)`), found from the cluster client's slot map. A MOVED (the slot
    moved since that map was read: a failover, a migration) is followed once to the node it
    names; an ASK (the slot is migrating) once with ASKING. Every write sent this way is
    idempotent, so sending it again is safe.
    """

    def __init__(
        self, cluster: Redis, *, replicas: int, timeout_ms: int, node_client: NodeClient
    ) -> None:
        super().__init__(cluster, replicas=replicas, timeout_ms=timeout_ms)
        self._node_client = node_client
        self._nodes: dict[tuple[str, int], Redis] = {}

    def script(self, name: str, *, prelude: Prelude = None) -> ReplicatedScript:
        return ClusterReplicatedScript(self, name, prelude=prelude)

    def _client(self, address: tuple[str, int]) -> Redis:
        client = self._nodes.get(address)
        if client is None:
            client = self._nodes[address] = self._node_client(*address)
        return client

    async def on_owner(
        self, key: str, queue: Callable[[Pipeline], object]
    ) -> tuple[list[Any], int]:
        """Queue writes with `queue` on a pipeline to the owner of `key`'s slot, then WAIT."""
        # The slot map is read by the cluster client's first command: a process whose first
        # command is one of these reads it here (a no-op once it has one).
        await self.redis.initialize()
        # redis-py's cluster client is untyped: its slot map, read without a round trip.
        node: Any = self.redis.get_node_from_key(key)  # type: ignore[attr-defined]
        address, asking = (node.host, int(node.port)), False
        for _ in range(2):
            pipe = self._client(address).pipeline(transaction=False)
            if asking:
                pipe.execute_command("ASKING")
            queue(pipe)
            try:
                replies, acknowledged = await self.execute(pipe)
            except AskError as redirect:  # MovedError too
                address, asking = (redirect.host, int(redirect.port)), (type(redirect) is AskError)
                continue
            except (redis_errors.ConnectionError, redis_errors.TimeoutError):
                # The owner is down or cut off (a failover under way). The slot map routes
                # these writes, and only the cluster client's own errors refresh it: a keyed
                # read through it does (and finds the promoted master, or fails as this did).
                # The write is not sent again (it may have run): the caller gets a 503.
                with suppress(*REDIS_ERRORS):
                    await self.redis.exists(key)
                raise
            return replies[1:] if asking else replies, acknowledged
        raise TryAgainError("the slot moved twice during one write")

    async def rewrite(self, key: str, value: bytes) -> int:
        result = await call(
            "SET+WAIT",
            self.on_owner(key, lambda pipe: pipe.set(key, value, xx=True, keepttl=True)),
        )
        acknowledged: int = result[1]
        return acknowledged

    async def aclose(self) -> None:
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()


class ClusterReplicatedScript(ReplicatedScript):
    """A `ReplicatedScript` run on the master that owns its first key's slot."""

    _writes: ClusterReplicatedWrites

    async def _run(self, keys: Sequence[str], args: Sequence[ScriptArg]) -> tuple[Any, int]:
        def queue(pipe: Pipeline) -> None:
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)

        def queue_loaded(pipe: Pipeline) -> None:
            # A node that lacks the script (restarted, newly promoted): load it on the same
            # connection first.
            pipe.script_load(self._script.script)
            queue(pipe)

        try:
            (reply,), acknowledged = await self._writes.on_owner(keys[0], queue)
        except NoScriptError:
            (_, reply), acknowledged = await self._writes.on_owner(keys[0], queue_loaded)
        return reply, acknowledged
