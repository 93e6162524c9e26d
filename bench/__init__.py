"""Benchmarks of storefront: `make bench` (python -m bench), `make bench-quick` (--quick),
`make bench-profile` (python -m bench.profile) and `make loadgen` (python -m bench.loadgen).

See bench/README.md. The harness reuses tools/run_stack.py (finding and starting Redis,
process groups, readiness waits), which is a script rather than a module of a package: its
folder is appended to `sys.path` here, so `import run_stack` works in this package.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_TOOLS = str(REPO / "tools")
if _TOOLS not in sys.path:
    sys.path.append(_TOOLS)
