"""A local storefront stack, started one way by `make run` (`python -m devstack`), the
benchmarks (bench/) and the service tests (tests/services): Redis, then both services as child
processes on loopback, each in its own process group, stopped in order.

Modules: `processes` (start, watch, stop), `redis_server` (REDIS_URL or a private
redis-server), `services` (`python -m inventory|checkout` with their environment), `config`
(what `make run` reads from the environment and `.env`), `__main__` (`make run`).
"""
