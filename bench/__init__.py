"""Benchmarks of storefront: `make bench` (python -m bench), `make bench-quick` (--quick),
`make bench-profile` (python -m bench.profile) and `make loadgen` (python -m bench.loadgen).

See bench/README.md. Redis and the services are started by `devstack`, as `make run` starts
them.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
