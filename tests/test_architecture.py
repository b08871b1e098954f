"""The package's map, enforced: pure modules import no I/O, and imports run one way.

- Pure modules (errors, the proxy's framing, target and header rules, the site's pages
  and PAC, policy/ but for reading rule folders) are imported in a fresh interpreter and
  sys.modules must then hold none of the I/O modules; their source, and everything it
  imports from fwdproxy, is read with ast, so a forbidden import is caught even when
  another module happened to import it first.
- Imports run one way: site/ and policy/ never import proxy/ (nor trio, h11 or socket),
  proxy/ never imports the server, workers or the command line, and nothing imports cli.
- Size: at most about ten modules at the top of the package, none over ~500 lines, and no
  function over 60 lines without a ``# long:`` comment above it saying why.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fwdproxy
import fwdproxy.gateway
import fwdproxy.policy
import fwdproxy.site

PACKAGE_DIR = Path(fwdproxy.__file__).parent

PURE_MODULES = sorted(
    {"fwdproxy.errors", "fwdproxy.proxy.framing", "fwdproxy.proxy.target", "fwdproxy.proxy.headers",
     "fwdproxy.proxy.clienthello",
     "fwdproxy.site.pages", "fwdproxy.site.pac", "fwdproxy.site.statuspage", "fwdproxy.stats",
     "fwdproxy.site.refusals",
     "fwdproxy.policy",
     # what an importer produces, and squidGuard's time rules: values, no files
     "fwdproxy.importers.model", "fwdproxy.importers.sgtime"}
    # every room added to policy/ later is pure too, but for the one that reads the rule
    # folder's files (it still imports no trio, h11 or socket: see the direction tests)
    | {info.name for info in pkgutil.walk_packages(fwdproxy.policy.__path__, "fwdproxy.policy.")}
    - {"fwdproxy.policy.rulefiles"}
    # the web gateway's rewriting: every room of gateway/ is pure
    | {info.name for info in pkgutil.walk_packages(fwdproxy.gateway.__path__, "fwdproxy.gateway.")}
)
# modules a pure module may import from inside the package (the packages themselves hold
# only __version__ or docstrings and re-exports of pure modules)
PURE_OR_PACKAGE = set(PURE_MODULES) | {"fwdproxy", "fwdproxy.proxy", "fwdproxy.site", "fwdproxy.gateway",
                                       "fwdproxy.importers"}

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


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:``, which are never imported at run time."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) \
                    and child.test.id == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return nodes


def imported_names(name: str) -> set[str]:
    """Every module named by an import statement in `name`'s source (relative ones resolved)."""
    tree = ast.parse(module_path(name).read_text(encoding="utf-8"))
    is_package = module_path(name).name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(tree):
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


# -- import direction ----------------------------------------------------------------------


def modules_under(prefix: str) -> list[str]:
    return sorted(name for name in ALL_FWDPROXY_MODULES | {prefix} if name == prefix
                  or name.startswith(prefix + "."))


@pytest.mark.parametrize("name", modules_under("fwdproxy.site") + modules_under("fwdproxy.policy")
                         + modules_under("fwdproxy.gateway"))
def test_site_and_policy_never_import_proxy(name: str) -> None:
    reached = transitive_fwdproxy_imports(name)
    proxy = sorted(n for n in reached if n == "fwdproxy.proxy" or n.startswith("fwdproxy.proxy."))
    assert not proxy, f"{name} reaches {proxy}"
    for module in sorted(reached):
        io = {n for n in imported_names(module) if n.split(".")[0] in {"trio", "h11", "socket"}}
        assert not io, f"{module} imports {sorted(io)}"


@pytest.mark.parametrize("name", modules_under("fwdproxy.proxy"))
def test_proxy_never_imports_the_rooms_above_it(name: str) -> None:
    above = {"fwdproxy.server", "fwdproxy.workers", "fwdproxy.check", "fwdproxy.cli"}
    assert not imported_names(name) & above


def test_nothing_imports_cli() -> None:
    importers = sorted(name for name in ALL_FWDPROXY_MODULES - {"fwdproxy.__main__"}
                       if "fwdproxy.cli" in imported_names(name))
    assert importers == []


def test_the_direction_check_can_fail() -> None:
    """The checks above read real imports: connection does import the proxy's rooms."""
    assert "fwdproxy.proxy.forward" in transitive_fwdproxy_imports("fwdproxy.proxy.connection")
    assert "fwdproxy.cli" in imported_names("fwdproxy.__main__")


# -- size ----------------------------------------------------------------------------------

SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))
LONG_FUNCTION = 60
MAX_MODULE_LINES = 500


def test_about_ten_modules_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE_DIR.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= 10, top


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_no_module_over_500_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_long_functions_say_why(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    long_ones = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno is not None
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            above = first - 2  # the comment block just above the def (or its decorators)
            while above >= 0 and lines[above].strip().startswith("#") \
                    and not lines[above].strip().startswith("# long:"):
                above -= 1
            reason = above >= 0 and lines[above].strip().startswith("# long:")
            if node.end_lineno - node.lineno + 1 > LONG_FUNCTION and not reason:
                long_ones.append(f"{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long_ones, long_ones
