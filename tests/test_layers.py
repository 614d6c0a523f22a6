"""Lower layers import nothing from higher ones: the reply engine never imports services or views."""

import ast
from pathlib import Path

CHAT = Path(__file__).resolve().parent.parent / "chat"
# Each package or module, with the modules of the app it must never import (directly).
FORBIDDEN = {
    "eventlog": ("chat.replies", "chat.services", "chat.streams", "chat.views", "chat.asgi"),
    "replies": ("chat.services", "chat.streams", "chat.views", "chat.asgi", "chat.admin"),
    "services.py": ("chat.streams", "chat.views", "chat.asgi"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
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
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, f"{path.name}: {node.name} imports inside a function"
