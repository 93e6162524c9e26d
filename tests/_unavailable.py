"""What a test does when a tool or service it needs is missing: skip locally, with the
reason, and fail in CI (CI=true), where no test may skip."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(problem: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem} [CI=true: no test may skip]", pytrace=False)
    pytest.skip(problem)
