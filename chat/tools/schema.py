"""A Python function as a tool a model can call: its JSON schema from signature, hints, docstring.

The schema is what both vendors take (`parameters` for OpenAI, `input_schema` for Anthropic):
an object whose properties are the function's parameters. A parameter without a default is
required; a hint the schema cannot say is refused when the tools are loaded, naming the tool,
rather than letting a model send arguments nobody checked.
"""

import inspect
import re
import types
import typing
from typing import Any, Literal, Union

_SIMPLE = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$", re.IGNORECASE)
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class SchemaError(TypeError):
    """A parameter whose type no JSON schema here can describe."""


def type_schema(hint: Any) -> dict:
    """The JSON schema of one type hint."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if len(kept) == 1:
            return type_schema(kept[0])
        return {"anyOf": [type_schema(a) for a in kept]}
    if hint in (list, tuple, set) or origin in (list, tuple, set, frozenset):
        items = args[0] if args and origin is not tuple or len(args) == 2 and args[1] is Ellipsis else None
        return {"type": "array", **({"items": type_schema(items)} if items is not None else {})}
    if hint is dict or origin is dict:
        return {"type": "object"}
    raise SchemaError(
        f"its type {hint!r} has no JSON schema (use str, int, float, bool, list, dict or Literal)"
    )


def docstring_parts(func: Any) -> tuple[str, dict[str, str]]:
    """The first paragraph of the docstring, and the `name: text` lines of its Args section."""
    doc = inspect.getdoc(func) or ""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line):
            break
        summary.append(line.strip())
    described: dict[str, str] = {}
    in_args, last = False, None
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args = True
            continue
        if not in_args:
            continue
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")) and line.rstrip().endswith(":"):
            break  # the next section (Returns:, Raises:)
        match = _ARG_LINE.match(line)
        if match and match.group(1).lstrip("*") not in described:
            last = match.group(1).lstrip("*")
            described[last] = match.group(2).strip()
        elif last is not None:
            described[last] = f"{described[last]} {line.strip()}".strip()
    return " ".join(summary), described


def parameters_schema(func: Any, skip: set[str]) -> dict:
    """The JSON schema of a function's parameters, but those named in `skip` (injected ones)."""
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func)
    _, described = docstring_parts(func)
    properties: dict[str, dict] = {}
    required: list[str] = []
    for name, parameter in signature.parameters.items():
        if name in skip:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise SchemaError(f"its parameter *{name} cannot be described to a model")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise SchemaError(f"its parameter {name} is positional-only; a model sends arguments by name")
        try:
            schema = dict(type_schema(hints.get(name, parameter.annotation)))
        except SchemaError as exc:
            raise SchemaError(f"parameter {name}: {exc}") from None
        if name in described and described[name]:
            schema["description"] = described[name]
        if parameter.default is parameter.empty:
            required.append(name)
        elif parameter.default is None or isinstance(parameter.default, str | int | float | bool):
            schema["default"] = parameter.default
        properties[name] = schema
    return {"type": "object", "properties": properties, "required": required}
