"""Lower layers import nothing from higher ones: the reply engine never imports services or views."""

import ast
from pathlib import Path

CHAT = Path(__file__).resolve().parent.parent / "chat"
# Each package or module, with the modules of the app it must never import (directly).
FORBIDDEN = {
    "eventlog": ("chat.replies", "chat.services", "chat.streams", "chat.views", "chat.asgi"),
    "replies": ("chat.services", "chat.streams", "chat.views", "chat.asgi", "chat.admin"),
    "services.py": ("chat.streams", "chat.views", "chat.asgi"),
    # The runtime owns what runs without importing it: each owner asks it for its parts.
    "runtime.py": (
        *("chat.db", "chat.eventlog", "chat.ratelimit", "chat.replies", "chat.tools"),
        *("chat.services", "chat.streams", "chat.views", "chat.asgi", "chat.admission"),
    ),
    # The checkpointer and the sweeper know the engine by the interface they ask of it, so the
    # engine (generation.py) imports them and nothing goes the other way, even for type hints.
    "replies/checkpoints.py": ("chat.replies.generation",),
    "replies/stale.py": ("chat.replies.generation",),
}


def parse(path: Path) -> ast.Module:
    """`ast.parse`, tried again where CPython 3.11 raises "AST constructor recursion depth
    mismatch": its AST validator keeps its recursion depth per interpreter, not per thread, so
    a parse in another thread (the suite's live server) can upset it (CPython gh-106905,
    fixed in 3.12)."""
    for attempt in range(5):
        try:
            return ast.parse(path.read_text())
        except SystemError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_imports_a_layer_above_it():
    problems = []
    for name, forbidden in FORBIDDEN.items():
        files = [CHAT / name] if name.endswith(".py") else sorted((CHAT / name).glob("*.py"))
        assert files, name
        for path in files:
            for module in imported_modules(path):
                if module.startswith(forbidden):
                    problems.append(f"{path.relative_to(CHAT.parent)} imports {module}")
    assert problems == []


def test_no_import_inside_a_function_in_the_engine():
    """An import inside a function is how a cycle hides; the engine has none."""
    for path in sorted((CHAT / "replies").glob("*.py")) + sorted((CHAT / "eventlog").glob("*.py")):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, f"{path.name}: {node.name} imports inside a function"


# --- private names of the libraries the app stands on ---------------------------------------

PROJECT = CHAT.parent / "project"
LIBRARIES = ("django", "asgiref", "uvicorn", "whitenoise", "servestatic", "limits", "redis", "axes")
# Underscore names that are documented API: Django's Model._meta (the Model _meta API) and
# Model._state (adding, db), the default and base managers; namedtuple's methods; os._exit.
DOCUMENTED = {
    *("_meta", "_state", "_default_manager", "_base_manager"),
    *("_replace", "_asdict", "_fields", "_make", "_exit"),
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def app_files() -> list[Path]:
    return sorted(CHAT.rglob("*.py")) + sorted(PROJECT.rglob("*.py"))


def own_private_names(files: list[Path]) -> set[str]:
    """Every underscore name the app itself defines: functions, classes, module and class
    variables, attributes it assigns, `__slots__` entries, keyword parameters."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
            ):
                names.update(c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    return {name for name in names if _private(name)}


def private_uses(path: Path, own: set[str]) -> list[str]:
    """`file:line name` for each underscore name used here that the app does not define."""
    found = []
    where = path.relative_to(CHAT.parent)
    for node in ast.walk(parse(path)):
        name = None
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            name = node.attr
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(LIBRARIES):
            hidden = [part for part in node.module.split(".") if _private(part)]
            hidden += [alias.name for alias in node.names if _private(alias.name)]
            name = hidden[0] if hidden else None
        elif isinstance(node, ast.Import):
            hidden = [
                part
                for alias in node.names
                if alias.name.startswith(LIBRARIES)
                for part in alias.name.split(".")
                if _private(part)
            ]
            name = hidden[0] if hidden else None
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name = node.args[1].value
        if name and _private(name) and name not in own and name not in DOCUMENTED:
            found.append(f"{where}:{node.lineno} {name}")
    return found


def test_the_app_reads_no_private_name_of_the_libraries_it_stands_on():
    """chat/ and project/ use the documented API of Django, asgiref, uvicorn, the static-file
    server, `limits`, redis-py and (the project's) django-axes: an underscore name the app does
    not define itself is another library's internal, which changes without notice (and pins
    the app to one release). A departure that cannot be avoided is written so that it reads no such name."""
    files = app_files()
    own = own_private_names(files)
    problems = [use for path in files for use in private_uses(path, own)]
    assert problems == []


def test_the_private_name_check_finds_what_it_is_for(tmp_path):
    """The check above is not vacuous: each way of reaching an internal is found."""
    own = own_private_names(app_files())
    sample = CHAT / "_sample_for_the_check.py"
    sample.write_text(
        "from django.utils.autoreload import _autoreload_started\n"
        "import django.core._private\n"
        "def f(response, settings):\n"
        "    response._iterator\n"
        "    getattr(settings, '_wrapped')\n"
        "    response._meta\n"
    )
    try:
        found = private_uses(sample, own)
    finally:
        sample.unlink()
    expected = ["_autoreload_started", "_private", "_iterator", "_wrapped"]
    assert [use.split(" ", 1)[1] for use in found] == expected
