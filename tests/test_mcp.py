"""Tools from MCP servers (issue 31): a real MCP server (tests/mcp_server.py, the official SDK)
over stdio and over streamable HTTP, its tools offered beside CHAT_TOOLS to the fake vendors
(tests/vendor_servers.py), called, streamed and stored as tool steps; and each way a server
fails becomes a tool error the model reads while the reply completes.
"""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chat.tools import tools_for
from chat.tools.mcp_servers import mcp_servers
from tests.conftest import free_port
from tests.processes import PYTHON, ROOT, migrate, port_open, server_env
from tests.steps_client import follow

SERVER = ROOT / "tests" / "mcp_server.py"
STDIO = f"stdio:{sys.executable} {SERVER}"


def add(a: int, b: int) -> str:
    """The host's own add, which wins over the MCP server's."""
    return "the host's add"


@pytest.fixture
def mcp(server, settings):
    """configure(*entries): CHAT_MCP_SERVERS on the live server, each server connected and listed."""
    settings.CHAT_MCP_TIMEOUT = 30  # a stdio child starts Python and imports the SDK: slow on a busy CI

    def configure(*entries: str) -> None:
        settings.CHAT_MCP_SERVERS = list(entries)
        server.call(mcp_servers.refresh(), timeout=30)

    yield configure
    settings.CHAT_MCP_SERVERS = []
    server.call(mcp_servers.refresh(), timeout=30)  # the servers dropped are stopped


class HttpMcpServer:
    """tests/mcp_server.py serving streamable HTTP in a process of its own (tools named web_*)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen | None = None

    def start(self) -> "HttpMcpServer":
        args = [PYTHON, str(SERVER), "--http", str(self.port), "--prefix", "web"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            assert time.monotonic() < deadline and self.process.poll() is None, "the MCP server did not start"
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def http_mcp():
    server = HttpMcpServer()
    yield server
    server.kill()


def _send(tab, model: str, text: str = "hi"):
    reply = tab.send(text, model=model)["assistant_message"]
    received = follow(tab.http, reply["id"])
    return received, tab.wait_finished(reply["id"], reply["conversation_id"])


def _results(received) -> list[dict]:
    """The tool_result events, without their durations."""
    return [
        {k: v for k, v in e.json.items() if k != "duration_ms"} for e in received if e.event == "tool_result"
    ]


def _offered(body: dict) -> dict[str, dict]:
    """The tools a request offered, by name, as {"description", "schema"} (either vendor)."""
    offered = {}
    for tool in body.get("tools", []):
        if "function" in tool:
            tool = tool["function"]
            offered[tool["name"]] = {"description": tool["description"], "schema": tool["parameters"]}
        else:
            offered[tool["name"]] = {"description": tool["description"], "schema": tool["input_schema"]}
    return offered


def _wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


VENDORS = {
    "openai": ("openai_vendor", "openai:gpt-test", "tool_calls"),
    "anthropic": ("anthropic_vendor", "anthropic:claude-test", "tool_use"),
}


@pytest.mark.parametrize("name", list(VENDORS))
def test_a_stdio_servers_tool_is_offered_called_and_stored_as_a_step(request, tab, mcp, name):
    fixture, model, tool_finish = VENDORS[name]
    vendor = request.getfixturevalue(fixture)
    mcp(STDIO)
    vendor.play({"call": "add", "id": "c1", "args": ['{"a": 2, ', '"b": 3}']}, {"finish": tool_finish})
    vendor.play({"echo": "tool"})
    received, message = _send(tab, model, "2+3?")
    assert received[-1].event == "done" and message["status"] == "complete"
    assert _results(received) == [{"id": "c1", "name": "add", "result": {"result": 5}, "error": None}]
    first, second = vendor.completions()[-2:]
    offered = _offered(first.body)
    assert {"add", "slow", "fail", "picture", "dotted_name_"} <= set(offered)
    assert offered["add"]["description"] == "Add two whole numbers."
    assert offered["add"]["schema"]["properties"]["a"]["type"] == "integer"
    assert offered["add"]["schema"]["required"] == ["a", "b"]
    assert message["content"] == '{"result": 5}'  # what the next request sent back, echoed
    step = message["steps"][0]
    assert step["type"] == "tool" and step["name"] == "add" and step["arguments"] == {"a": 2, "b": 3}
    assert step["result"] == {"result": 5} and step["error"] is None


def test_a_streamable_http_servers_tool_beside_a_host_tool_that_wins_its_name(
    tab, mcp, http_mcp, openai_vendor, settings, caplog
):
    settings.CHAT_TOOLS = ["tests.test_mcp.add"]
    twin = f"stdio:{sys.executable} -u {SERVER}"  # the same tools again: each clashes with STDIO's
    mcp(STDIO, http_mcp.start().url, twin)
    openai_vendor.play(
        {"call": "web_add", "id": "w", "args": ['{"a": 20, "b": 22}']},
        {"call": "add", "id": "h", "args": ['{"a": 1, "b": 1}']},
        {"call": "dotted_name_", "id": "d", "args": ["{}"]},
        {"finish": "tool_calls"},
    )
    openai_vendor.play({"say": "Done."})
    received, message = _send(tab, "openai:gpt-test")
    assert [(r["name"], r["result"], r["error"]) for r in _results(received)] == [
        ("web_add", {"result": 42}, None),
        ("add", "the host's add", None),  # CHAT_TOOLS' add, not the stdio server's
        ("dotted_name_", {"result": "dotted"}, None),  # `dotted.name!` as vendors accept a name
    ]
    offered = _offered(openai_vendor.completions()[-2].body)
    assert offered["add"]["description"] == "The host's own add, which wins over the MCP server's."
    assert {"web_add", "web_slow", "slow"} <= set(offered)
    clash = "offers a tool named {}, as a host tool or an earlier server does: it is skipped"
    assert f"The MCP server {STDIO} {clash.format('add')}" in caplog.text
    assert f"The MCP server {twin} {clash.format('slow')}" in caplog.text
    assert message["status"] == "complete" and [s["name"] for s in message["steps"]] == [
        "web_add",
        "add",
        "dotted_name_",
    ]


def test_a_failing_a_slow_and_a_picture_tool_go_back_to_the_model(tab, mcp, openai_vendor, settings):
    settings.CHAT_TOOL_TIMEOUT = 0.5
    mcp(STDIO)
    openai_vendor.play(
        {"call": "fail", "id": "f", "args": ["{}"]},
        {"call": "slow", "id": "s", "args": ['{"seconds": 30}']},
        {"call": "picture", "id": "p", "args": ["{}"]},
        {"call": "add", "id": "a", "args": ['{"a": "two"}']},
        {"finish": "tool_calls"},
    )
    openai_vendor.play({"say": "Some of that worked."})
    started = time.monotonic()
    received, message = _send(tab, "openai:gpt-test")
    assert time.monotonic() - started < 20  # the slow call was given up, not waited for
    assert received[-1].event == "done" and message["status"] == "complete"
    fail, slow, picture, bad = _results(received)
    assert fail["error"] == "The tool fail failed: Error executing tool fail"
    assert slow["error"] == "The tool slow did not answer within 0.5 seconds."
    assert picture["error"] is None and picture["result"] == "A red dot:\n[image: image/png]"
    assert bad["error"].startswith("The tool add failed: Error executing tool add: 2 validation errors")
    tool_messages = [m for m in openai_vendor.completions()[-1].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages][:3] == [fail["error"], slow["error"], picture["result"]]
    openai_vendor.play({"call": "add", "id": "again", "args": ['{"a": 1, "b": 2}']}, {"finish": "tool_calls"})
    openai_vendor.play({"say": "3"})
    received, _ = _send(tab, "openai:gpt-test")
    assert _results(received)[0]["result"] == {"result": 3}  # the session outlived the cancelled call


def test_a_stdio_server_that_dies_mid_call_is_an_error_step_then_it_is_started_again(
    tab, mcp, openai_vendor, server
):
    mcp(STDIO)
    openai_vendor.play({"call": "crash", "id": "x", "args": ["{}"]}, {"finish": "tool_calls"})
    openai_vendor.play({"say": "The server died."})
    received, message = _send(tab, "openai:gpt-test")
    assert received[-1].event == "done" and message["status"] == "complete"
    assert message["content"] == "The server died."
    error = _results(received)[0]["error"]
    assert error == "The MCP server stdio:python closed the connection during the call."
    assert message["steps"][0]["error"] == error
    server.call(mcp_servers.refresh(), timeout=30)  # connects again (at once, rather than after a pause)
    openai_vendor.play({"call": "add", "id": "a", "args": ['{"a": 1, "b": 2}']}, {"finish": "tool_calls"})
    openai_vendor.play({"say": "3"})
    received, _ = _send(tab, "openai:gpt-test")
    assert _results(received)[0]["result"] == {"result": 3}


def test_an_http_server_killed_is_an_error_step_and_the_reply_completes(tab, mcp, http_mcp, openai_vendor):
    mcp(http_mcp.start().url)
    http_mcp.kill()
    openai_vendor.play({"call": "web_add", "id": "a", "args": ['{"a": 1, "b": 2}']}, {"finish": "tool_calls"})
    openai_vendor.play({"say": "No server."})
    received, message = _send(tab, "openai:gpt-test")
    assert received[-1].event == "done" and message["status"] == "complete"
    error = _results(received)[0]["error"]
    server_name = f"127.0.0.1:{http_mcp.port}/mcp"
    assert error.startswith(f"The MCP server {server_name} ")
    # Whether the session saw the server go before the call (its event stream broke) or during it:
    assert "cannot be reached: the connection failed (" in error or "closed the connection during" in error
    assert message["steps"][0]["error"] == error


def test_a_server_started_after_the_app_is_picked_up_at_refresh(mcp, http_mcp, settings):
    settings.CHAT_MCP_REFRESH = 0.2
    mcp(http_mcp.url)  # nothing listens there yet
    assert not [name for name in tools_for("openai") if name.startswith("web_")]
    http_mcp.start()
    _wait_for(lambda: "web_add" in tools_for("openai"), "the tools of a server started late")


def test_tools_list_changed_is_heard_without_waiting_for_the_refresh(mcp, openai_vendor, tab):
    mcp(STDIO)  # CHAT_MCP_REFRESH is 300 s: only the notification can bring `extra` this soon
    assert "extra" not in tools_for("openai")
    openai_vendor.play({"call": "grow", "id": "g", "args": ["{}"]}, {"finish": "tool_calls"})
    openai_vendor.play({"say": "Grown."})
    _send(tab, "openai:gpt-test")
    _wait_for(lambda: "extra" in tools_for("openai"), "the tool the server added")


def test_a_stop_during_an_mcp_call_cancels_it_and_keeps_the_session(tab, mcp, openai_vendor):
    mcp(STDIO)
    openai_vendor.play({"call": "slow", "id": "s", "args": ['{"seconds": 30}']}, {"finish": "tool_calls"})
    reply = tab.send("wait", model="openai:gpt-test")["assistant_message"]
    received = follow(tab.http, reply["id"], stop_after=1)
    assert received[-1].event == "tool_call"
    assert tab.post(f"/api/messages/{reply['id']}/stop").json()["status"] == "stopped"
    rest = follow(tab.http, reply["id"], received[-1].id)
    result = next(e.json for e in rest if e.event == "tool_result")
    assert result["error"] == "Stopped while this tool was running."
    assert rest[-1].event == "done" and rest[-1].json["status"] == "stopped"
    openai_vendor.play({"call": "add", "id": "a", "args": ['{"a": 1, "b": 2}']}, {"finish": "tool_calls"})
    openai_vendor.play({"say": "3"})
    received, _ = _send(tab, "openai:gpt-test")
    assert _results(received)[0]["result"] == {"result": 3}


@pytest.mark.parametrize("without_mcp", [False, True], ids=["with-mcp", "without-mcp"])
def test_the_runtime_stop_ends_the_stdio_child_and_leaves_no_task(tmp_path, without_mcp):
    env = server_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", CHAT_MCP_SERVERS=STDIO, CHAT_MCP_TIMEOUT="30")
    migrate(env)
    args = [PYTHON, "-m", "tests.mcp_cycles", *(["--without-mcp"] if without_mcp else [])]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    if without_mcp:  # the app runs as before; the check says what to install
        assert report["checks"] == ["chat.E032"]
        assert report["cycles"] == [{"offered": [], "child_gone": False, "tasks": []}] * 2
        assert "the mcp package is not installed (pip install chat-sse[mcp])" in done.stderr
    else:
        assert report["checks"] == []
        for cycle in report["cycles"]:
            assert {"add", "pid"} <= set(cycle["offered"])
            assert cycle["child_gone"] and cycle["tasks"] == []


def test_entries_that_name_no_server_are_check_errors_with_credentials_masked(settings):
    from django.core import checks

    settings.CHAT_MCP_SERVERS = [
        "https://bob:s3cret@tools.example/mcp?key=abc123",
        "ftp://files.example/mcp",
        'stdio:python "unclosed',
        "stdio:  ",
        "mcp.example/path?token=abc123",
    ]
    errors = [m for m in checks.run_checks() if m.id == "chat.E031"]
    assert [e.msg for e in errors] == [
        "CHAT_MCP_SERVERS: 'ftp://files.example/mcp' is neither an http(s) URL nor stdio:<command line>.",
        "CHAT_MCP_SERVERS: the command line of 'stdio:python \"unclosed' cannot be read "
        "(No closing quotation).",
        "CHAT_MCP_SERVERS: 'stdio:' names no command to run.",
        "CHAT_MCP_SERVERS: 'mcp.example/path?token=***' is neither an http(s) URL nor stdio:<command line>.",
    ]
    settings.CHAT_MCP_SERVERS = ["https://bob:s3cret@tools.example:8443/mcp?key=abc123", "ftp://x.example"]
    (error,) = [m for m in checks.run_checks() if m.id == "chat.E031"]
    assert "s3cret" not in error.msg


def test_a_url_entry_is_shown_masked_and_labelled_without_secrets():
    from chat.tools.mcp_config import entry_parse

    entry = entry_parse("https://bob:s3cret@tools.example:8443/mcp?key=abc123&x=1")
    assert entry.url == "https://bob:s3cret@tools.example:8443/mcp?key=abc123&x=1"
    assert entry.shown == "https://***@tools.example:8443/mcp?key=***&x=***"
    assert entry.label == "tools.example:8443/mcp"
    stdio = entry_parse("stdio:/usr/bin/env API_KEY=k node server.js --token t")
    assert stdio.command == ("/usr/bin/env", "API_KEY=k", "node", "server.js", "--token", "t")
    assert stdio.label == "stdio:env" and stdio.url is None


def test_results_and_names_as_a_model_gets_them():
    from mcp.types import CallToolResult, EmbeddedResource, ImageContent, TextContent, TextResourceContents

    from chat.tools.errors import ToolError
    from chat.tools.mcp import tool_name
    from chat.tools.mcp_text import tool_result

    assert tool_name("files/read.v2!") == "files_read_v2_" and len(tool_name("x" * 80)) == 64
    doc = TextResourceContents(uri="file:///a.txt", text="the file's text")
    result = CallToolResult(
        content=[
            TextContent(text="one"),
            ImageContent(data="AA==", mime_type="image/png"),
            EmbeddedResource(resource=doc),
        ]
    )
    assert tool_result("t", result) == "one\n[image: image/png]\nthe file's text"
    assert tool_result("t", CallToolResult(content=[], structured_content={"n": 1})) == {"n": 1}
    with pytest.raises(ToolError, match="^The tool t failed: nope$"):
        tool_result("t", CallToolResult(content=[TextContent(text="nope")], is_error=True))
    assert Path(SERVER).exists()


def test_servers_that_answer_garbage_or_nothing_offer_no_tools_and_hold_nothing_up(
    mcp, server, settings, caplog, tab, openai_vendor
):
    settings.CHAT_MCP_TIMEOUT = 1.0
    mute = "import sys, time; print('hello, I speak no MCP'); sys.stdout.flush(); time.sleep(60)"
    started = time.monotonic()
    mcp(f"stdio:{sys.executable} -c {json.dumps(mute)}", f"{server.url}/api/")
    assert time.monotonic() - started < 15  # bounded by CHAT_MCP_TIMEOUT, not by the mute child
    _wait_for(lambda: "did not answer within 1 seconds" in caplog.text, "the mute server's timeout")
    assert f"{server.url}/api/ failed: it answered with an error (Not Found)" in caplog.text
    _, message = _send(tab, "openai:gpt-test")
    assert message["status"] == "complete" and "tools" not in openai_vendor.completions()[-1].body


def test_an_mcp_tool_in_chat_tools_approval_waits_for_the_person(tab, mcp, openai_vendor, settings):
    settings.CHAT_TOOLS_APPROVAL = "add"
    mcp(STDIO)
    openai_vendor.play({"call": "add", "id": "c1", "args": ['{"a": 4, "b": 5}']}, {"finish": "tool_calls"})
    openai_vendor.play({"echo": "tool"})
    reply = tab.send("4+5?", model="openai:gpt-test")["assistant_message"]
    decided: list = []

    def on_event(event) -> None:
        if event.event == "status" and event.json["state"] == "approval":
            body = {"tool_call_id": event.json["tool_call_id"], "approved": True}
            decided.append(event.json)
            threading.Thread(
                target=tab.post, args=(f"/api/messages/{reply['id']}/approve",), kwargs={"json": body}
            ).start()

    received = tab.stream(reply["id"], on_event=on_event)
    assert decided == [
        {"state": "approval", "tool_call_id": "c1", "name": "add", "arguments": {"a": 4, "b": 5}}
    ]
    assert _results(received) == [{"id": "c1", "name": "add", "result": {"result": 9}, "error": None}]
    message = tab.wait_finished(reply["id"], reply["conversation_id"])
    assert message["status"] == "complete" and message["content"] == '{"result": 9}'
