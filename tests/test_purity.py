"""The pure modules (errors, target, headers, pages, policy/) import no I/O.

Two checks: each pure module is imported in a fresh interpreter and sys.modules must then
hold none of the I/O modules; and the source of every pure module (including everything it
imports from fwdproxy) is read with ast, so a forbidden import is caught even when another
module happened to import it first.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fwdproxy
import fwdproxy.policy

PACKAGE_DIR = Path(fwdproxy.__file__).parent

PURE_MODULES = sorted(
    {"fwdproxy.errors", "fwdproxy.framing", "fwdproxy.target", "fwdproxy.headers",
     "fwdproxy.pages", "fwdproxy.pac", "fwdproxy.policy"}
    # every room added to policy/ later is pure too
    | {info.name for info in pkgutil.walk_packages(fwdproxy.policy.__path__, "fwdproxy.policy.")}
)
# modules a pure module may import from inside the package (the package itself holds
# only __version__)
PURE_OR_PACKAGE = set(PURE_MODULES) | {"fwdproxy"}

ALL_FWDPROXY_MODULES = {
    info.name for info in pkgutil.walk_packages(fwdproxy.__path__, "fwdproxy.")
}
IMPURE_FWDPROXY_MODULES = sorted(ALL_FWDPROXY_MODULES - PURE_OR_PACKAGE)

# never loaded by importing a pure module
FORBIDDEN_LOADED = sorted(
    {"trio", "h11", "socket", "_socket", "selectors", "select", "ssl", "asyncio",
     "subprocess", "yaml", "http.client", "urllib.request", "sniffio", "outcome"}
    | set(IMPURE_FWDPROXY_MODULES)
)

# never named in an import statement of a pure module (os, io and pathlib are loaded by
# every interpreter, so only the source can show that a pure module does not use them)
FORBIDDEN_IMPORTS = {
    "trio", "h11", "socket", "selectors", "select", "ssl", "asyncio", "subprocess", "yaml",
    "os", "io", "pathlib", "shutil", "tempfile", "sys", "logging", "http", "urllib.request",
    "threading", "time",
}


def module_path(name: str) -> Path:
    relative = Path(*name.split(".")[1:])
    package = PACKAGE_DIR / relative / "__init__.py"
    return package if package.exists() else (PACKAGE_DIR / relative).with_suffix(".py")


def imported_names(name: str) -> set[str]:
    """Every module named by an import statement in `name`'s source (relative ones resolved)."""
    tree = ast.parse(module_path(name).read_text(encoding="utf-8"))
    is_package = module_path(name).name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            # `from fwdproxy import errors` imports the submodule fwdproxy.errors
            names.update(
                f"{module}.{alias.name}" for alias in node.names
                if f"{module}.{alias.name}" in ALL_FWDPROXY_MODULES
            )
    return names


def transitive_fwdproxy_imports(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(
            n for n in imported_names(current)
            if n == "fwdproxy" or n.startswith("fwdproxy.")
        )
    return seen


def test_pure_module_list_is_not_empty_and_exists() -> None:
    assert {"fwdproxy.errors", "fwdproxy.policy.engine"} <= set(PURE_MODULES)
    for name in PURE_MODULES:
        assert module_path(name).is_file(), name


@pytest.mark.parametrize("name", PURE_MODULES)
def test_importing_loads_no_io_module(name: str) -> None:
    code = (
        "import sys\n"
        f"import {name}\n"
        f"forbidden = {FORBIDDEN_LOADED!r}\n"
        "loaded = sorted(m for m in forbidden if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_check_itself_sees_io_modules() -> None:
    """The subprocess check must be able to fail: an I/O room does load trio."""
    code = "import sys, fwdproxy.server; assert 'trio' in sys.modules and 'socket' in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", PURE_MODULES)
def test_source_imports_only_pure_modules(name: str) -> None:
    reached = transitive_fwdproxy_imports(name)
    assert reached <= PURE_OR_PACKAGE, sorted(reached - PURE_OR_PACKAGE)
    for module in sorted(reached):
        bad = {
            imported for imported in imported_names(module)
            if imported in FORBIDDEN_IMPORTS or imported.split(".")[0] in FORBIDDEN_IMPORTS
        }
        assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("name", PURE_MODULES)
def test_source_opens_no_files(name: str) -> None:
    for module in sorted(transitive_fwdproxy_imports(name)):
        tree = ast.parse(module_path(module).read_text(encoding="utf-8"))
        calls = [
            node.func.id for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in {"open", "input", "print", "__import__", "exec", "eval"}
        ]
        assert not calls, f"{module} calls {calls}"
