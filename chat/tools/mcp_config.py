"""CHAT_MCP_SERVERS read: each entry a URL (streamable HTTP) or `stdio:<command line>`.

An entry may carry a credential (`https://user:token@host/mcp`, `?key=...`), so each is known
by two other names: `shown`, the entry with those masked, for the operator (checks, logs); and
`label`, what a model may read in an error (the host and path, or the program's name alone: a
command line's arguments may hold a key too). This module imports nothing of the `mcp` SDK, so
`manage.py check` can judge the setting on a site that has not installed it.
"""

import logging
import os
import shlex
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from chat import conf

log = logging.getLogger("chat.tools.mcp")

STDIO = "stdio:"
MASK = "***"


class McpConfigError(ValueError):
    """An entry of CHAT_MCP_SERVERS that names no server; the message names it (masked)."""


@dataclass(frozen=True)
class McpEntry:
    raw: str  # as configured: may hold a credential, never logged or shown
    url: str | None  # a streamable HTTP server
    command: tuple[str, ...]  # or a program and its arguments, run with its stdin and stdout
    shown: str  # the entry, credentials masked
    label: str  # the server as a model may read it

    @property
    def is_stdio(self) -> bool:
        return self.url is None


def url_masked(url: str) -> str:
    """The URL with its user, password and query values replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(key, MASK) for key, _value in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))


def entry_parse(raw: str) -> McpEntry:
    """One entry as an McpEntry, or McpConfigError saying why it names no server."""
    raw = raw.strip()
    if raw.lower().startswith(STDIO):
        return _stdio_entry(raw)
    shown = url_masked(raw)
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise McpConfigError(
            f"CHAT_MCP_SERVERS: {repr(shown)} is neither an http(s) URL nor stdio:<command line>."
        )
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return McpEntry(raw=raw, url=raw, command=(), shown=shown, label=f"{host}{parts.path}")


def _stdio_entry(raw: str) -> McpEntry:
    line = raw[len(STDIO) :]
    try:
        command = tuple(shlex.split(line))
    except ValueError as exc:
        raise McpConfigError(
            f"CHAT_MCP_SERVERS: the command line of {repr(raw)} cannot be read ({exc})."
        ) from None
    if not command:
        raise McpConfigError(f"CHAT_MCP_SERVERS: {repr(raw)} names no command to run.")
    label = f"stdio:{os.path.basename(command[0])}"
    return McpEntry(raw=raw, url=None, command=command, shown=raw, label=label)


def configured_entries() -> list[str]:
    """The entries of CHAT_MCP_SERVERS as written (a list in settings, or comma separated)."""
    value = conf.get("CHAT_MCP_SERVERS")
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items or () if item and item.strip()]


def mcp_entries() -> tuple[McpEntry, ...]:
    """The servers configured, but the entries that name none (check chat.E031 names them)."""
    return _parsed(tuple(configured_entries()))


@lru_cache(maxsize=8)
def _parsed(raws: tuple[str, ...]) -> tuple[McpEntry, ...]:
    """Read once per value of the setting: `mcp_entries` is on every reply's send path."""
    entries: dict[str, McpEntry] = {}
    for raw in raws:
        try:
            entries.setdefault(raw, entry_parse(raw))  # the same server twice is one server
        except McpConfigError as exc:
            log.error("%s It is left out.", exc)
    return tuple(entries.values())
