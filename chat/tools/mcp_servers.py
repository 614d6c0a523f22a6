"""The MCP servers of this process (CHAT_MCP_SERVERS), one McpServer each, owned by the runtime.

The runtime's start connects to each and lists its tools (CHAT_MCP_TIMEOUT at most), its stop
closes them. `mcp_tools` is what `chat.tools.tools_for` adds to the host's tools on a reply's
send path: synchronous, from memory, the tools each server listed last. A setting changed
while the server runs (a test's `settings`) is seen there: the servers it adds are started on
the runtime's loop, those it drops are offered no more and stopped.
"""

import asyncio
import logging
from collections.abc import Collection

from chat import conf
from chat.runtime import runtime
from chat.tools.mcp import McpServer, McpTool, sdk_import
from chat.tools.mcp_config import McpEntry, mcp_entries

log = logging.getLogger("chat.tools.mcp")


class McpServers:
    """The configured MCP servers, each with the owner task of its session."""

    def __init__(self) -> None:
        self.servers: dict[str, McpServer] = {}  # by the entry as configured
        self.loop: asyncio.AbstractEventLoop | None = None  # where their tasks run
        self._warned: set[tuple[str, str]] = set()

    async def start(self) -> None:
        """Server start: connect to each server and list its tools, CHAT_MCP_TIMEOUT at most."""
        self.loop = asyncio.get_running_loop()
        await self.refresh()

    async def stop(self) -> None:
        """Server stop: close the sessions of this loop (stdio children end)."""
        loop = asyncio.get_running_loop()
        mine = [key for key, server in self.servers.items() if server.loop is loop]
        await asyncio.gather(*(self.servers.pop(key).stop() for key in mine))
        if self.loop is loop:
            self.loop = None

    async def refresh(self) -> None:
        """Start the servers configured since, stop those dropped, and have each list its tools
        now; returns when each has answered or failed (CHAT_MCP_TIMEOUT at most)."""
        if self.loop is None or self.loop.is_closed():
            self.loop = asyncio.get_running_loop()
        if mcp_entries():
            await self.loop.run_in_executor(runtime.executor("chat-mcp-import", 1), sdk_import)
        dropped = self._reconcile()
        timeout = conf.get_float("CHAT_MCP_TIMEOUT")
        await asyncio.gather(
            *(server.stop() for server in dropped), *(s.listed(timeout) for s in self.servers.values())
        )

    def tools(self, taken: Collection[str]) -> list[McpTool]:
        """The tools the servers listed last, but those whose name a host tool (`taken`) or an
        earlier server already has: skipped, with a warning logged once."""
        entries = mcp_entries()
        if len(entries) != len(self.servers) or any(entry.raw not in self.servers for entry in entries):
            self._reconcile_soon()  # the setting changed: start the servers added, stop those dropped
        if not entries:
            return []
        names, offered = set(taken), []
        for entry in entries:
            server = self.servers.get(entry.raw)
            for tool in server.tools if server is not None else ():
                if tool.name in names:
                    self._warn_clash(entry, tool.name)
                    continue
                names.add(tool.name)
                offered.append(tool)
        return offered

    def _reconcile(self) -> list[McpServer]:
        """On the servers' loop: a server for each entry; those no longer configured, returned."""
        entries = {entry.raw: entry for entry in mcp_entries()}
        dropped = [self.servers.pop(raw) for raw in list(self.servers) if raw not in entries]
        for raw, entry in entries.items():
            if raw not in self.servers:
                server = self.servers[raw] = McpServer(entry)
                server.start(runtime.spawn)
        return dropped

    def _reconcile_soon(self) -> None:
        """From any thread: reconcile on the servers' loop, if the runtime started one."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def reconcile() -> None:
            for server in self._reconcile():
                runtime.spawn(server.stop(), name="chat-mcp-stop")

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            reconcile()
        else:
            loop.call_soon_threadsafe(reconcile)

    def _warn_clash(self, entry: McpEntry, name: str) -> None:
        if (entry.raw, name) not in self._warned:
            self._warned.add((entry.raw, name))
            log.warning(
                "The MCP server %s offers a tool named %s, as a host tool or an earlier server does: "
                "it is skipped (rename one of them)",
                entry.shown,
                name,
            )


mcp_servers = runtime.part("chat-mcp", McpServers, start=McpServers.start, stop=McpServers.stop)


def mcp_tools(taken: Collection[str]) -> list[McpTool]:
    """The MCP servers' tools a reply may call beside the host's (`taken`: their names)."""
    return mcp_servers.tools(taken)
