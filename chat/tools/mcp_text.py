"""What a model (and the log) reads of an MCP server: a tool's result, and each failure as a
sentence that names the server by its label, never by a URL or a command line that may hold a key.
"""

import asyncio
from typing import Any

from chat.tools.errors import ToolError
from chat.tools.mcp_config import McpEntry


def unreachable(entry: McpEntry, problem: str) -> str:
    message = "The MCP server %(server)s cannot be reached: %(why)s."
    return message % {"server": entry.label, "why": problem}


def problem_of(exc: BaseException, entry: McpEntry, timeout: float) -> str:
    """Why a connection failed, as a phrase naming no URL and no argument (either may hold a key)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        leaves = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = leaves[0] if leaves else exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return f"it did not answer within {timeout:g} seconds"
    if isinstance(exc, ImportError):
        return "the mcp package is not installed (pip install chat-sse[mcp])"
    if isinstance(exc, FileNotFoundError | PermissionError) and entry.is_stdio:
        return f"its command could not be run ({type(exc).__name__})"
    from mcp.types import CONNECTION_CLOSED

    if getattr(exc, "code", None) == CONNECTION_CLOSED:
        return "it closed the connection"
    message = getattr(exc, "message", None)  # an MCPError: the server's own words
    if isinstance(message, str) and message:
        return f"it answered with an error ({message[:200]})"
    return f"the connection failed ({type(exc).__name__})"


def tool_result(name: str, result: Any) -> Any:
    """A CallToolResult as a tool's result: its structured content if it has some, else its
    text (other content named, as `[image: image/png]`); `isError` as a ToolError."""
    text = "\n".join(_content_text(block) for block in result.content or ())
    if result.is_error:
        message = "The tool %(tool)s failed: %(why)s"
        raise ToolError(message % {"tool": name, "why": text or "no reason given"})
    if result.structured_content is not None:
        return result.structured_content
    return text


def _content_text(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}]"
    if kind == "resource_link":
        return f"[resource: {block.uri}]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return text if isinstance(text, str) else f"[resource: {resource.uri} ({resource.mime_type})]"
    return f"[{kind or 'content'}]"
