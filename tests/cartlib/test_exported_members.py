import subprocess
import sys
import types

import pytest

import cartlib
import cartlib.store
import cartlib.web


@pytest.mark.parametrize("package", [cartlib.store, cartlib.web], ids=lambda p: p.__name__)
def test_all_lists_exactly_the_public_names_sorted(package: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert package.__all__ == sorted(package.__all__, key=_ruff_order)
    assert set(package.__all__) == public


def test_the_top_package_exports_nothing() -> None:
    """Each name has one home: `cartlib.store`, `cartlib.web` or `cartlib.settings`."""
    assert not hasattr(cartlib, "__all__")
    assert {name for name in vars(cartlib) if not name.startswith("_")} <= {
        "settings",
        "store",
        "web",
    }


def test_the_store_loads_no_web_framework() -> None:
    """Importing the store (in a fresh interpreter) loads no FastAPI, Starlette or uvicorn
    module: what the import-linter contract checks statically, checked at run time."""
    code = (
        "import sys, cartlib.store; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'fastapi', 'starlette', 'uvicorn', 'httptools', 'cartlib.web'}), "
        "'cartlib.web' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] False"


def _ruff_order(name: str) -> tuple[int, str]:
    # RUF022's order: SCREAMING_CASE, then CamelCase, then the rest, each alphabetical.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name
