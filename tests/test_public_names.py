"""`tools/check_public_names.py` (run by `make lint`): the project uses no private name of
FastAPI, Starlette or uvicorn, and the check catches one when it is there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tools" / "check_public_names.py"


def run_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *map(str, paths)], capture_output=True, text=True
    )


def test_the_project_uses_no_private_framework_name() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout


VIOLATIONS = {
    "private name imported": "from fastapi.routing import _effective_route_context_var\n",
    "private module": "from fastapi._compat import ModelField\n",
    "private module imported whole": "import starlette._utils\n",
    "internals": "from fastapi.dependencies.utils import request_body_to_args\n",
    "private attribute of an imported module": "import uvicorn\nuvicorn.config._x = 1\n",
    "private attribute of an imported class": (
        "from starlette.requests import Request\nRequest._receive\n"
    ),
    "getattr of a private name": "import fastapi\ngetattr(fastapi.routing, '_x')\n",
    "known internal on any object": "def f(route):\n    return route._embed_body_fields\n",
}


@pytest.mark.parametrize("name", VIOLATIONS)
def test_a_deliberate_violation_fails_the_check(tmp_path: Path, name: str) -> None:
    source = tmp_path / "violation.py"
    source.write_text(VIOLATIONS[name])
    result = run_check(source)
    assert result.returncode == 1
    assert "violation.py:" in result.stdout


def test_public_names_and_own_private_names_pass(tmp_path: Path) -> None:
    source = tmp_path / "fine.py"
    source.write_text(
        "from fastapi import params\n"
        "from starlette.requests import Request\n"
        "class Mine:\n"
        "    _private = 1\n"
        "def f(request: Request, mine: Mine) -> object:\n"
        "    return request.app.__class__, mine._private, params.Depends\n"
    )
    assert run_check(source).returncode == 0
