"""Writes confirmed on replicas: a Lua script and `WAIT` in one round trip.

`WAIT numreplicas timeout` answers how many replicas have acknowledged every write *this
connection* made so far, so it has to follow the write on the same connection. A
non-transactional pipeline sends both at once on one pooled connection: still one round
trip. (Inside MULTI, WAIT would not block, so this is not a transaction.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from cartlib.redis import call
from cartlib.scripts import Prelude, ScriptArg, source


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
    """One Lua script (a `.lua` file of cartlib.scripts) run by SHA, then WAIT, in one round
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
