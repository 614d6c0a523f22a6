"""`manage.py chat` and a tool call that waits for approval (issue 31): asked on a terminal,
decided as told by a flag, refused without a terminal. A subprocess on a SQLite file, the demo
model calling its own tool."""

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from tests.test_chat_command import ROOT, env, rows, run_manage

APPROVAL = {"CHAT_DEMO_STEPS": "1", "CHAT_TOOLS_APPROVAL": "current_time", "CHAT_DEMO_RATE": "0"}


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-approval") / "chat.sqlite3"
    run_manage(["migrate", "--noinput", "-v0"], env(path)).check_returncode()
    return path


def _env(database) -> dict[str, str]:
    return {**env(database), **APPROVAL, "CHAT_MODELS": "demo", "CHAT_MODEL": "demo"}


def _tool_states(database) -> list[tuple]:
    return rows(database, "SELECT state FROM chat_toolapproval ORDER BY created_at DESC LIMIT 1")


def test_without_a_terminal_the_call_is_refused_and_it_says_so(database):
    done = run_manage(["chat", "What time is it?"], _env(database), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "[refused current_time({}): stdin is not a terminal; --approve-tools runs it]" in done.stderr
    assert done.stdout.startswith("The `current_time` tool failed (The person refused to run this tool.)")
    assert _tool_states(database) == [("denied",)]


def test_approve_tools_runs_the_call_without_asking(database):
    done = run_manage(
        ["chat", "--approve-tools", "What time is it?"], _env(database), stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    assert "[approved current_time({}): as the command was told]" in done.stderr
    assert done.stdout.startswith("The server's clock says it is")
    assert _tool_states(database) == [("approved",)]


def _read_until(fd: int, wanted: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        assert time.monotonic() < deadline, f"no {wanted!r} within {timeout} s; got {seen!r}"
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"closed before {wanted!r}; got {seen!r}"
            seen += chunk
    return seen


def test_on_a_terminal_it_asks_and_yes_runs_the_call(database):
    terminal, stdin = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "chat", "What time is it?"],
        cwd=ROOT,
        env=_env(database),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(stdin)
    try:
        _read_until(process.stderr.fileno(), b"Run current_time({})? [y/N] ")
        os.write(terminal, b"y\n")
        out, err = process.communicate(timeout=30)
    finally:
        os.close(terminal)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out.decode().startswith("The server's clock says it is")
    assert _tool_states(database) == [("approved",)]


def test_deny_tools_refuses_without_asking_even_on_a_terminal(database):
    terminal, stdin = pty.openpty()
    try:
        done = run_manage(["chat", "--deny-tools", "What time is it?"], _env(database), stdin=stdin)
    finally:
        os.close(stdin)
        os.close(terminal)
    assert done.returncode == 0, done.stderr
    assert "[refused current_time({}): as the command was told]" in done.stderr
    assert "[y/N]" not in done.stderr
    assert done.stdout.startswith("The `current_time` tool failed (The person refused to run this tool.)")
    assert _tool_states(database) == [("denied",)]
