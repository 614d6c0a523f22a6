"""`python -m tests.mcp_cycles [--without-mcp]`: the runtime started and stopped twice with
CHAT_MCP_SERVERS set, in a process of its own; prints what each cycle saw and left (JSON).

Each cycle calls the stdio server's `pid` tool, stops the runtime, and reports whether that
child is gone (reaped: no zombie left) and which tasks remain. With `--without-mcp` the `mcp`
package cannot be imported, as on a site that did not install the extra: the app must still
start, stop and offer its own tools, and `manage.py check` must say what to install.
tests/test_mcp.py runs it.
"""

import asyncio
import json
import sys
from pathlib import Path


async def cycle() -> dict:
    from chat.runtime import runtime
    from chat.tools import tools_for

    async with asyncio.timeout(60):
        await runtime.start()
        tools = tools_for("openai")
        pid = (await tools["pid"].func())["result"] if "pid" in tools else None
        await runtime.stop()
    me = asyncio.current_task()
    return {
        "offered": sorted(tools),
        "child": pid,
        "tasks": sorted(task.get_name() for task in asyncio.all_tasks() if task is not me),
    }


def checks() -> list[str]:
    from django.core import checks as django_checks

    return sorted(message.id for message in django_checks.run_checks() if message.id.startswith("chat.E03"))


def main() -> None:
    if "--without-mcp" in sys.argv:
        sys.modules["mcp"] = None  # `import mcp` raises ImportError, as without the extra
    import django

    django.setup()
    import chat.asgi  # noqa: F401 - the application imports

    cycles = [asyncio.run(cycle()) for _ in range(2)]
    for cycle_seen in cycles:  # gone: reaped, not a zombie
        child = cycle_seen.pop("child")
        cycle_seen["child_gone"] = child is not None and not Path(f"/proc/{child}").exists()
    print(json.dumps({"cycles": cycles, "checks": checks()}))


if __name__ == "__main__":
    main()
