"""The Lua scripts (the `.lua` files in this folder) and the loader that calls them by SHA.

Each script `<name>.lua` is called only through its typed wrapper `<name>.py` beside it,
which names its KEYS and ARGV and turns its reply into frozen dataclasses (`shared.py` holds
what several wrappers share). `*_prelude.lua` files are fragments prepended at load time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from cartlib.store.redis import call

ScriptArg = str | int | float | bytes


# One prelude's name, or several prepended in order.
Prelude = str | tuple[str, ...] | None


@cache
def source(name: str, prelude: Prelude = None) -> str:
    """The text of `<name>.lua`, preceded by `<prelude>.lua` (or by each of several, in
    order): Lua scripts cannot import."""
    folder = files(__package__)
    preludes = (prelude,) if isinstance(prelude, str) else prelude or ()
    return "".join(
        (folder / f"{part}.lua").read_text(encoding="utf-8") for part in (*preludes, name)
    )


class LuaScript:
    """One script, run atomically in Redis by SHA.

    Sends `EVALSHA` and, on `NOSCRIPT` (a restarted or flushed Redis), loads the script and
    sends it again, as redis-py's `AsyncScript` does (which registers the script and knows its
    SHA), but through the client's `evalsha` directly: `AsyncScript`'s call adds imports and
    isinstance checks against its pipeline classes to every run. Every run is timed as
    `script:<name>`.
    """

    def __init__(self, redis: Redis, name: str, *, prelude: Prelude = None) -> None:
        self.name = name
        self._label = f"script:{name}"
        self._redis = redis
        self._script = redis.register_script(source(name, prelude))

    def __call__(self, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> Awaitable[Any]:
        # Not a coroutine of its own: each level between a request and redis-py is resumed
        # again at every wait for Redis.
        return call(self._label, self._run(keys, args))

    async def _run(self, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        try:
            return await self._redis.evalsha(self._script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self._script.sha = await self._redis.script_load(self._script.script)
            return await self._redis.evalsha(self._script.sha, len(keys), *keys, *args)
