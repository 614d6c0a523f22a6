"""One MCP server's tools, through the official `mcp` SDK: one session, in a task of its own.

The SDK's session is an anyio context manager that must be entered and exited in one task, and
a transport that fails cancels what runs inside it (the HTTP transport's task group does). So
each server has an owner task (started by chat/tools/mcp_servers.py through the runtime) that
connects, lists the tools, then serves the calls replies hand it through a queue, each in a task
of the session's, while the reply waits on a future: a reply stopped, or past
CHAT_TOOL_TIMEOUT, cancels its future and so its call. When the connection fails the owner
connects again after a pause that doubles up to CHAT_MCP_REFRESH; meanwhile the tools last
listed stay offered and a call fails at once with a sentence the model reads. Nothing here
raises into a reply but `ToolError`.
"""

import asyncio
import contextlib
import importlib
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from chat import conf
from chat.providers.base import ToolSpec
from chat.tools.errors import ToolError
from chat.tools.mcp_config import McpEntry
from chat.tools.mcp_text import problem_of, tool_result, unreachable

log = logging.getLogger("chat.tools.mcp")

MAX_TOOLS = 100  # taken from one server; vendors take about 128 tools in all
MAX_PAGES = 20  # of a listing: a server that pages forever cannot hold its owner
DESCRIPTION_CHARS = 1024
FIRST_PAUSE = 0.5  # seconds before connecting again; doubled after each failed attempt
STOP_TIMEOUT = 10.0  # the SDK gives a stdio child 2 s to leave after stdin closes, 2 more after SIGTERM
_UNFIT = re.compile(r"[^a-zA-Z0-9_-]")


def sdk_import() -> None:
    """Import the SDK, on a thread: it takes a second or more, which the owner tasks, importing
    it on the server's event loop, would hold every stream up for. Missing: `_session` says so."""
    with contextlib.suppress(ImportError):
        for module in ("mcp", "mcp.client.stdio", "mcp.client.subscriptions", "mcp.types"):
            importlib.import_module(module)


def tool_name(remote: str) -> str:
    """A server's tool name as both vendors accept one (^[a-zA-Z0-9_-]{1,64}$); '' if none is left."""
    return _UNFIT.sub("_", remote)[:64]


@dataclass(frozen=True, eq=False)  # known by identity: a listing makes new ones
class McpTool:
    name: str  # as offered to models
    remote: str  # as the server knows it
    spec: ToolSpec
    call: Callable[..., Awaitable[Any]]  # call(**arguments): the result, or ToolError
    server: "McpServer"


@dataclass(eq=False)
class _Call:
    name: str
    remote: str
    arguments: dict
    future: asyncio.Future


class McpServer:
    """One configured server: its owner task, its tools as last listed, and its calls."""

    def __init__(self, entry: McpEntry) -> None:
        self.entry = entry
        self.tools: tuple[McpTool, ...] = ()
        self.state: Literal["connecting", "up", "down"] = "connecting"
        self.problem = ""  # why the last attempt failed, a phrase free of secrets
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self._calls: asyncio.Queue[_Call] = asyncio.Queue()
        self._wake = asyncio.Event()  # list again now (a refresh asked, or tools/list_changed)
        self._listened: list[asyncio.Future] = []  # refresh() callers waiting for the next listing
        self._skipped: set[str] = set()
        self._scope = anyio.CancelScope()  # the owner task's: stop() cancels it

    # --- what the manager and the replies call -----------------------------------------------

    def start(self, spawn: Callable[..., asyncio.Task]) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = spawn(self._run(), name=f"chat-mcp {self.entry.label}")

    async def stop(self) -> None:
        """End the session (a stdio child is told to leave, then terminated) and fail its calls.

        Through the owner's anyio scope, not `task.cancel()`: the SDK shields its stdio
        shutdown from anyio's cancellation, but a native cancel delivered during that shutdown
        left the task hung (a child that ignored its closed stdin, stopped 1.5 s after start)."""
        if self.task is not None and not self.task.done():
            self._scope.cancel()
            _done, pending = await asyncio.wait([self.task], timeout=STOP_TIMEOUT)
            if pending:
                log.warning("The MCP server %s did not close within %g s", self.entry.shown, STOP_TIMEOUT)
                self.task.cancel()
        self.state, self.problem = "down", "the server is stopping"
        self._fail_waiting()

    async def listed(self, timeout: float) -> None:
        """Ask for a listing now and wait for it (or for the attempt to fail), `timeout` at most."""
        assert self.loop is not None
        future = self.loop.create_future()
        self._listened.append(future)
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, timeout)

    async def call(self, name: str, remote: str, arguments: dict) -> Any:
        """The tool's result (a JSON value or text), or ToolError with a sentence for the model."""
        if self.loop is not asyncio.get_running_loop() or self.task is None or self.task.done():
            raise ToolError(unreachable(self.entry, "it is not running in this process"))
        if self.state == "down":
            self._wake.set()  # try again at once rather than at the end of the pause
            raise ToolError(unreachable(self.entry, self.problem))
        future = self.loop.create_future()
        self._calls.put_nowait(_Call(name, remote, arguments, future))
        return tool_result(name, await future)  # a cancelled wait cancels the future, and the call

    # --- the owner task ----------------------------------------------------------------------

    async def _run(self) -> None:
        with self._scope:
            await self._connect_forever()

    async def _connect_forever(self) -> None:
        pause = FIRST_PAUSE
        while True:
            self.state = "connecting"
            try:
                await self._session()
            except Exception as exc:  # noqa: BLE001 - whatever the server or transport did: connect again
                self.problem = problem_of(exc, self.entry, conf.get_float("CHAT_MCP_TIMEOUT"))
                log.warning("The MCP server %s failed: %s", self.entry.shown, self.problem)
                log.debug("The MCP server %s failed", self.entry.shown, exc_info=True)
            else:
                self.problem = "it closed the connection"
            if self.state == "up":
                pause = FIRST_PAUSE  # it worked until now: connect again soon
            self.state = "down"
            self._fail_waiting()
            with anyio.move_on_after(min(pause, conf.get_float("CHAT_MCP_REFRESH"))):
                await self._wake.wait()
            self._wake.clear()
            pause = min(pause * 2, max(conf.get_float("CHAT_MCP_REFRESH"), FIRST_PAUSE))

    async def _session(self) -> None:
        from mcp import Client  # the `mcp` extra; chat.E032 says when it is missing

        client = Client(self._target(), cache=None, message_handler=self._on_message)
        timeout = conf.get_float("CHAT_MCP_TIMEOUT")
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as connecting:
            async with client:
                await self._list(client)
                connecting.deadline = math.inf
                self.state, self.problem = "up", ""
                await self._serve(client)
        if connecting.cancelled_caught:
            raise TimeoutError

    def _target(self) -> Any:
        if self.entry.url is not None:
            return self.entry.url
        from mcp.client.stdio import StdioServerParameters

        command, *args = self.entry.command
        return StdioServerParameters(command=command, args=args)

    async def _serve(self, client: Any) -> None:
        """Take calls until the connection fails (its error, or a cancel from the transport)."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._relist, client)
            group.start_soon(self._listen, client)
            while True:
                call = await self._calls.get()
                group.start_soon(self._serve_call, client, call)

    async def _serve_call(self, client: Any, call: _Call) -> None:
        from mcp.shared.exceptions import MCPError
        from mcp.types import CONNECTION_CLOSED

        if call.future.done():  # the reply stopped waiting before its turn
            return
        with anyio.CancelScope() as scope:
            call.future.add_done_callback(lambda future: scope.cancel() if future.cancelled() else None)
            try:
                _resolve(call.future, await client.call_tool(call.remote, call.arguments))
            except MCPError as exc:
                if exc.code == CONNECTION_CLOSED:
                    raise  # the session is gone: connect again (the finally below tells the reply)
                self._fail_call(call, "The MCP server %(server)s refused the call of %(tool)s: %(why)s", exc)
            except Exception as exc:  # noqa: BLE001 - e.g. a result the protocol does not allow
                log.warning("The MCP server %s sent %s garbage", self.entry.shown, call.remote, exc_info=True)
                self._fail_call(
                    call, "The MCP server %(server)s sent no valid result for %(tool)s (%(why)s).", exc
                )
            finally:
                if not call.future.done():
                    message = "The MCP server %(server)s closed the connection during the call."
                    call.future.set_exception(ToolError(message % {"server": self.entry.label}))

    async def _relist(self, client: Any) -> None:
        """List again every CHAT_MCP_REFRESH seconds, or at once when asked (refresh, list_changed)."""
        while True:
            with anyio.move_on_after(conf.get_float("CHAT_MCP_REFRESH")):
                await self._wake.wait()
            await self._list(client)

    async def _listen(self, client: Any) -> None:
        """tools/list_changed on a 2026 connection (subscriptions/listen); an older server sends
        it unasked, to `_on_message`."""
        from mcp.client.subscriptions import ListenNotSupportedError

        try:
            async with client.listen(tools_list_changed=True) as changes:
                async for _event in changes:
                    self._wake.set()
        except ListenNotSupportedError:
            return
        except Exception as exc:  # noqa: BLE001 - the tools are still listed every CHAT_MCP_REFRESH s
            log.debug(
                "The MCP server %s sends no tools/list_changed (%s)", self.entry.shown, type(exc).__name__
            )

    async def _on_message(self, message: Any) -> None:
        from mcp.types import ToolListChangedNotification

        if isinstance(message, ToolListChangedNotification):
            self._wake.set()
        elif isinstance(message, Exception):
            log.debug("The MCP server %s: %s", self.entry.shown, type(message).__name__)

    async def _list(self, client: Any) -> None:
        self._wake.clear()
        listed: list[Any] = []
        cursor = None
        with anyio.fail_after(conf.get_float("CHAT_MCP_TIMEOUT")):
            for _page in range(MAX_PAGES):
                page = await client.list_tools(cursor=cursor)
                listed.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        self.tools = self._offerable(listed)
        self._answer_listened()

    def _offerable(self, listed: list[Any]) -> tuple[McpTool, ...]:
        tools: dict[str, McpTool] = {}
        for remote in listed:
            name, schema = tool_name(remote.name), remote.input_schema
            if not name or name in tools or not isinstance(schema, dict) or schema.get("type") != "object":
                self._skip(remote.name, "its name or its input schema cannot be offered to a model")
                continue
            if len(tools) == MAX_TOOLS:
                self._skip("*", f"it lists more than {MAX_TOOLS} tools; the rest are left out")
                break
            description = (remote.description or remote.title or name)[:DESCRIPTION_CHARS]
            spec = ToolSpec(name=name, description=description, parameters=schema)
            tools[name] = McpTool(name, remote.name, spec, _caller(self, name, remote.name), self)
        return tuple(tools.values())

    def _fail_call(self, call: _Call, message: str, exc: Exception) -> None:
        why = getattr(exc, "message", None) or type(exc).__name__  # an MCPError's own words
        if not call.future.done():
            call.future.set_exception(
                ToolError(message % {"server": self.entry.label, "tool": call.name, "why": why})
            )

    def _skip(self, remote: str, why: str) -> None:
        if remote not in self._skipped:
            self._skipped.add(remote)
            log.warning("The MCP server %s: tool %r skipped: %s", self.entry.shown, remote, why)

    def _answer_listened(self) -> None:
        waiting, self._listened = self._listened, []
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def _fail_waiting(self) -> None:
        """The calls queued for a session that is gone fail; refresh() callers are answered."""
        while not self._calls.empty():
            call = self._calls.get_nowait()
            if not call.future.done():
                call.future.set_exception(ToolError(unreachable(self.entry, self.problem)))
        self._answer_listened()


def _caller(server: McpServer, name: str, remote: str) -> Callable[..., Awaitable[Any]]:
    async def call(**arguments: Any) -> Any:
        return await server.call(name, remote, arguments)

    call.__name__ = call.__qualname__ = name
    return call


def _resolve(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)
