"""Fail on any use of a private name of the web frameworks (`make lint`).

A private name (`_x`) of FastAPI, Starlette or uvicorn may change or vanish in any release,
and code built on one broke on other versions (issue 13). Checked statically with `ast`:

- importing a `_`-prefixed name from these frameworks, or from a module of theirs whose path
  has a `_`-prefixed part (`fastapi._compat`), or from their undocumented internals
  (`fastapi.dependencies`);
- reading `x._y` where `x` was imported from them (a module, a class, a function), and
  `getattr(x, "_y")`;
- reading any attribute of the framework internals known to have been used here before
  (`_embed_body_fields`, ...), whatever it is read on.

Usage: python tools/check_public_names.py [PATH ...]   (default: the project's packages)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

FRAMEWORKS = ("fastapi", "starlette", "uvicorn")
# Undocumented modules (no underscore in their names, but no public API either).
INTERNAL_MODULES = ("fastapi.dependencies",)
# Private attributes of framework objects that a value not traced to an import can reach
# (`route._embed_body_fields` on a route handed to a method).
KNOWN_PRIVATE = frozenset(
    {
        "_embed_body_fields",
        "_effective_route_context_var",
        "_get_routes_version",
        "_openapi_routes_version",
        "_stream_consumed",
        "_is_disconnected",
    }
)
DEFAULT_PATHS = ("cartlib", "inventory", "checkout", "devstack", "bench", "tools", "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _framework_module(module: str) -> bool:
    return module.split(".")[0] in FRAMEWORKS


def _bad_module(module: str) -> str | None:
    if not _framework_module(module):
        return None
    if any(_private(part) for part in module.split(".")):
        return f"imports the private module {module}"
    if any(module == m or module.startswith(m + ".") for m in INTERNAL_MODULES):
        return f"imports the framework internals {module}"
    return None


def check_source(source: str, filename: str) -> Iterator[str]:
    """Each violation in `source`, as `file:line: what`."""
    tree = ast.parse(source, filename)
    bound: set[str] = set()  # local names bound to a framework module or object
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                problem = _bad_module(alias.name)
                if problem:
                    yield f"{filename}:{node.lineno}: {problem}"
                if _framework_module(alias.name):
                    bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            problem = _bad_module(node.module)
            if problem:
                yield f"{filename}:{node.lineno}: {problem}"
            if not _framework_module(node.module):
                continue
            for alias in node.names:
                if _private(alias.name):
                    yield f"{filename}:{node.lineno}: imports {node.module}.{alias.name}"
                bound.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr in KNOWN_PRIVATE:
                yield f"{filename}:{node.lineno}: reads the framework internal .{node.attr}"
            elif _rooted_in(node.value, bound):
                yield f"{filename}:{node.lineno}: reads the private .{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and (node.args[1].value in KNOWN_PRIVATE or _rooted_in(node.args[0], bound))
        ):
            yield f"{filename}:{node.lineno}: reads the private {node.args[1].value!r}"


def _rooted_in(node: ast.expr, bound: set[str]) -> bool:
    """Whether `node` is a framework name, or an attribute or call chain starting at one."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return isinstance(node, ast.Name) and node.id in bound


def check_paths(paths: list[Path]) -> list[str]:
    problems: list[str] = []
    for path in paths:
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if ".venv" in file.parts:
                continue
            problems += check_source(file.read_text(), str(file))
    return problems


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    paths = [Path(arg) for arg in argv] or [root / name for name in DEFAULT_PATHS]
    problems = check_paths(paths)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} use(s) of private FastAPI/Starlette/uvicorn names", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
