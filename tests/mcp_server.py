"""A real MCP server, written with the official SDK, whose tools the tests offer to models.

Run as `python tests/mcp_server.py` it speaks MCP over stdio; with `--http PORT` it serves
streamable HTTP on 127.0.0.1:PORT/mcp (uvicorn). `--prefix NAME` puts NAME_ before each tool's
name, so two servers in one test have tools of their own. It imports nothing of the app.
"""

import argparse
import asyncio
import base64
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ImageContent, TextContent

PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


def build(prefix: str = "") -> MCPServer:
    """The server and its tools; `prefix` (with `_`) before each tool's name."""
    server = MCPServer("chat-test-tools")

    def named(name: str) -> str:
        return f"{prefix}_{name}" if prefix else name

    @server.tool(name=named("add"), description="Add two whole numbers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(name=named("slow"), description="Wait some seconds, then say so.")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"waited {seconds} s"

    @server.tool(name=named("fail"), description="Always fails.")
    def fail() -> str:
        raise ValueError("the fail tool failed, as asked")

    @server.tool(name=named("picture"), description="Some text and a picture.", structured_output=False)
    def picture() -> list:
        return [TextContent(text="A red dot:"), ImageContent(data=PIXEL, mime_type="image/png")]

    @server.tool(name=named("crash"), description="Ends the server's process mid-call.")
    def crash() -> str:
        os._exit(3)

    @server.tool(name=named("pid"), description="The server's process id.")
    def pid() -> int:
        return os.getpid()

    @server.tool(name=named("dotted.name!"), description="A name vendors do not accept.")
    def dotted() -> str:
        return "dotted"

    @server.tool(name=named("grow"), description="Adds the tool `extra` and tells the client.")
    async def grow(ctx: Context) -> str:
        if named("extra") not in {tool.name for tool in await server.list_tools()}:
            server.add_tool(lambda: "extra", name=named("extra"), description="Added by grow.")
        await ctx.notify_tools_changed()
        return "grown"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0, help="serve streamable HTTP on this port")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args()
    server = build(args.prefix)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        print("chat-test-tools: serving on stdio", file=sys.stderr)
        server.run("stdio")


if __name__ == "__main__":
    main()
