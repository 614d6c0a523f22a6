"""Tools: Python callables of the host project that a model may call while it answers.

`CHAT_TOOLS` lists them by dotted path. Each becomes a `Tool` with the JSON schema a model
needs (chat/tools/schema.py); chat/tools/rounds.py runs the calls the model asks for and
sends the results back until it answers. A tool that takes a parameter annotated
`ToolContext` gets whose conversation it serves, so it can read only that owner's data.
"""

import inspect
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from chat import conf
from chat.providers.base import ToolSpec
from chat.tools.mcp_servers import McpTool, mcp_tools
from chat.tools.schema import SchemaError, docstring_parts, parameters_schema

# The demo model's own tool, offered to it whatever CHAT_TOOLS says (chat/providers/demo.py).
DEMO_TOOLS = ("chat.tools.examples.current_time",)


@dataclass(frozen=True)
class ToolContext:
    """Whose conversation a tool call serves: a signed-in user (`user_id`) or a visitor.

    Filter by it (`Order.objects.filter(customer_id=context.user_id)`): the model chooses the
    arguments, never the owner. An anonymous visitor has `user_id` None and its `visitor` token.
    """

    user_id: int | None
    visitor: str
    conversation_id: str
    reply_id: str


@dataclass(frozen=True)
class Tool:
    name: str
    func: Any
    spec: ToolSpec
    context_parameter: str | None  # the parameter that receives the ToolContext, if any
    is_async: bool


def _context_parameter(func: Any) -> str | None:
    hints = typing.get_type_hints(func)
    for name in inspect.signature(func).parameters:
        if hints.get(name) is ToolContext:
            return name
    return None


def tool_from(func: Any, path: str = "") -> Tool:
    """A callable as a Tool; ImproperlyConfigured naming it if a model could not call it."""
    label = path or getattr(func, "__qualname__", repr(func))
    if not callable(func):
        raise ImproperlyConfigured(f"CHAT_TOOLS: {label} is not a function.")
    try:
        context = _context_parameter(func)
        parameters = parameters_schema(func, skip={context} if context else set())
    except (SchemaError, NameError, TypeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"CHAT_TOOLS: the tool {label} cannot be offered to a model: {exc}."
        ) from None
    name = func.__name__
    summary, _ = docstring_parts(func)
    spec = ToolSpec(name=name, description=summary or name.replace("_", " "), parameters=parameters)
    is_async = inspect.iscoroutinefunction(func)
    return Tool(name=name, func=func, spec=spec, context_parameter=context, is_async=is_async)


@lru_cache(maxsize=8)
def _load(paths: tuple[str, ...]) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for path in paths:
        try:
            func = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"CHAT_TOOLS: cannot import {path} ({exc}).") from None
        tool = tool_from(func, path)
        if tool.name in tools:
            raise ImproperlyConfigured(
                f"CHAT_TOOLS: two tools are named {tool.name}; a model needs one name each."
            )
        tools[tool.name] = tool
    return tools


def configured_paths() -> tuple[str, ...]:
    value = conf.get("CHAT_TOOLS")
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items or () if item and item.strip())


def tools_for(provider: str) -> dict[str, Tool]:
    """The tools a reply by this provider may call: CHAT_TOOLS, and the demo's own for the demo;
    then those of the MCP servers (CHAT_MCP_SERVERS), as they listed them last."""
    paths = configured_paths()
    if provider == "demo" and conf.get("CHAT_DEMO_STEPS"):
        paths = (*paths, *(p for p in DEMO_TOOLS if p not in paths))
    tools = _load(paths)
    remote = mcp_tools(tools.keys())
    if not remote:
        return tools
    return {**tools, **{tool.name: _from_mcp(tool) for tool in remote}}


@lru_cache(maxsize=512)
def _from_mcp(tool: McpTool) -> Tool:
    """An MCP server's tool: its func calls the server (the server checks the arguments)."""
    return Tool(name=tool.name, func=tool.call, spec=tool.spec, context_parameter=None, is_async=True)


def specs_for(provider: str) -> tuple[ToolSpec, ...]:
    return tuple(tool.spec for tool in tools_for(provider).values())
