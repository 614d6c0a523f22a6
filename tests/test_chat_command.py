"""`manage.py chat`, end to end: a subprocess, a SQLite file, and a fake OpenAI-compatible server."""

import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.vendor_servers import VendorServer

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-cli-test-secret-key"


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "chat.sqlite3"
    run_manage(["migrate", "--noinput", "-v0"], env(path)).check_returncode()
    return path


@pytest.fixture
def vendor():
    with VendorServer("openai") as vendor:
        yield vendor


def env(database: Path, vendor: VendorServer | None = None) -> dict[str, str]:
    names = ("DATABASE_URL", "CHAT_MODELS", "CHAT_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    names += ("LANGUAGE", "LC_ALL", "LC_MESSAGES")  # English output, whatever the shell speaks
    clean = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("ANTHROPIC_")}
    clean.update(
        DJANGO_SETTINGS_MODULE="project.settings", DATABASE_URL=f"sqlite:///{database}", LANG="C.UTF-8"
    )
    if vendor is not None:
        clean.update(
            OPENAI_BASE_URL=f"{vendor.url}/v1", OPENAI_API_KEY=KEY, CHAT_MODELS="openai:gpt-test,demo"
        )
    return clean


def run_manage(args: list[str], environ: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def rows(database: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return db.execute(sql, params).fetchall()


def test_the_reply_streams_to_stdout_and_is_stored(database, vendor):
    vendor.play({"say": "Hello"}, {"gate": "rest"}, {"say": " world"}, {"finish": "stop", "usage": [4, 2]})
    process = subprocess.Popen(
        [sys.executable, "manage.py", "chat", "Say hello"],
        cwd=ROOT,
        env=env(database, vendor),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out: list[bytes] = []
    reader = threading.Thread(
        target=lambda: out.extend(iter(lambda: os.read(process.stdout.fileno(), 1024), b""))
    )
    reader.start()
    deadline = time.monotonic() + 30
    while b"Hello" not in b"".join(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    # "Hello" is on the terminal while the model still holds the rest: it streams.
    assert b"".join(out) == b"Hello"
    vendor.gate("rest").set()
    assert process.wait(30) == 0
    reader.join(5)
    stderr = process.stderr.read().decode()
    assert b"".join(out).decode() == "Hello world\n"
    assert "[complete] conversation " in stderr and "openai:gpt-test · 4+2 tokens" in stderr
    conversation_id = stderr.split("conversation ")[1].split()[0]

    (conversation,) = rows(
        database,
        "SELECT user_id, visitor, model FROM chat_conversation WHERE id = ?",
        conversation_id.replace("-", ""),
    )
    assert conversation == (None, "cli", "openai:gpt-test")
    messages = rows(
        database,
        "SELECT role, content, status, finish_reason, input_tokens, output_tokens FROM chat_message "
        "WHERE conversation_id = ? ORDER BY created_at",
        conversation_id.replace("-", ""),
    )
    assert messages == [
        ("user", "Say hello", "complete", None, None, None),
        ("assistant", "Hello world", "complete", "stop", 4, 2),
    ]

    # --conversation continues it: the model gets the history.
    vendor.play({"say": "Again"})
    result = run_manage(["chat", "--conversation", conversation_id, "And again?"], env(database, vendor))
    assert (result.returncode, result.stdout) == (0, "Again\n"), result.stderr
    assert vendor.completions()[-1].body["messages"] == [
        {"role": "user", "content": "Say hello"},
        {"role": "assistant", "content": "Hello world"},
        {"role": "user", "content": "And again?"},
    ]
    count = rows(
        database,
        "SELECT count(*) FROM chat_message WHERE conversation_id = ?",
        conversation_id.replace("-", ""),
    )
    assert count == [(4,)]


def test_model_picks_a_model_and_a_failure_says_why(database, vendor):
    result = run_manage(["chat", "--model", "demo", "Hi"], {**env(database, vendor), "CHAT_DEMO_RATE": "0"})
    assert result.returncode == 0 and "**demo**" in result.stdout and "· demo ·" in result.stderr

    vendor.play({"status": 401})
    result = run_manage(["chat", "Hi"], env(database, vendor))
    assert result.returncode == 1
    assert "[error]" in result.stderr and "OPENAI_API_KEY" in result.stderr
    assert KEY not in result.stdout + result.stderr


def test_ctrl_c_stops_the_reply_keeps_its_text_and_closes_the_upstream(database, vendor):
    vendor.play({"say": "partial"}, {"gate": "never"})
    process = subprocess.Popen(
        [sys.executable, "manage.py", "chat", "Go on forever"],
        cwd=ROOT,
        env=env(database, vendor),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert select.select([process.stdout], [], [], 30)[0], "no text within 30 s"
    first = os.read(process.stdout.fileno(), 1024)
    assert first == b"partial"
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 130
    assert vendor.completions()[-1].closed_early.wait(5)
    assert rows(database, "SELECT status, content FROM chat_message WHERE content = 'partial'") == [
        ("stopped", "partial")
    ]


def test_regenerate_and_branch_keep_the_versions_and_the_model_sees_the_branch(database, vendor):
    vendor.play({"say": "First"})
    result = run_manage(["chat", "Question"], env(database, vendor))
    assert result.returncode == 0, result.stderr
    conversation_id = result.stderr.split("conversation ")[1].split()[0]
    vendor.play({"say": "Second"})
    again = run_manage(["chat", "-c", conversation_id, "--regenerate"], env(database, vendor))
    assert (again.returncode, again.stdout) == (0, "Second\n"), again.stderr
    assert vendor.completions()[-1].body["messages"] == [{"role": "user", "content": "Question"}]
    ((first_id,),) = rows(database, "SELECT id FROM chat_message WHERE content = 'First'")
    vendor.play({"say": "Third"})
    branch = ["chat", "-c", conversation_id, "--branch", str(uuid.UUID(first_id)), "Go on"]
    result = run_manage(branch, env(database, vendor))
    assert (result.returncode, result.stdout) == (0, "Third\n"), result.stderr
    assert vendor.completions()[-1].body["messages"] == [
        {"role": "user", "content": "Question"},
        {"role": "assistant", "content": "First"},
        {"role": "user", "content": "Go on"},
    ]
    kept = rows(
        database,
        "SELECT content FROM chat_message WHERE conversation_id = ?",
        conversation_id.replace("-", ""),
    )
    assert sorted(c for (c,) in kept) == ["First", "Go on", "Question", "Second", "Third"]
    refused = run_manage(["chat", "--regenerate"], env(database, vendor))
    assert refused.returncode != 0 and "--conversation" in refused.stderr


def test_attach_sends_files_by_path_judged_as_uploads_are(database, tmp_path):
    import io

    from PIL import Image

    picture = tmp_path / "dot.png"
    buffer = io.BytesIO()
    Image.new("RGB", (2, 3), (1, 2, 3)).save(buffer, "PNG")
    picture.write_bytes(buffer.getvalue())
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n")
    media = tmp_path / "media"
    environ = {**env(database), "CHAT_DEMO_RATE": "0", "MEDIA_ROOT": str(media), "CHAT_MODELS": "demo"}
    result = run_manage(["chat", "--attach", str(picture), "--attach", str(notes), "What is this?"], environ)
    assert result.returncode == 0, result.stderr
    conversation_id = result.stderr.split("conversation ")[1].split()[0].replace("-", "")
    files = rows(
        database,
        "SELECT a.name, a.content_type, a.width, a.height, a.file FROM chat_attachment a "
        "JOIN chat_message m ON a.message_id = m.id WHERE m.conversation_id = ? ORDER BY a.created_at",
        conversation_id,
    )
    assert [f[:4] for f in files] == [
        ("dot.png", "image/png", 2, 3),
        ("notes.md", "text/markdown", None, None),
    ]
    assert (media / files[0][4]).read_bytes() == picture.read_bytes()

    page = tmp_path / "page.png"
    page.write_bytes(b"<html><script>alert(1)</script></html>")
    before = rows(database, "SELECT count(*) FROM chat_conversation")
    result = run_manage(["chat", "--attach", str(page), "Look"], environ)
    assert result.returncode != 0 and "page.png" in result.stderr and "not accepted" in result.stderr
    assert rows(database, "SELECT count(*) FROM chat_conversation") == before


# --- the reply's phases on stderr, and --help (issue 32) ---------------------------------------

TOOLS_ENV = {"CHAT_TOOLS": "tests.test_tools_vendors.fruit_price"}


def play_pears(vendor: VendorServer) -> None:
    vendor.play(
        {"reason": "Pears: "},
        {"reason": "ask the market."},
        {"gate": "call"},
        {"call": "fruit_price", "id": "c1", "args": ['{"name": "pear", "count": 2}']},
        {"finish": "tool_calls"},
    )
    vendor.play({"gate": "answer"}, {"say": "Two pears cost 10."})


class Terminal:
    """stderr on a pseudo-terminal (so the command sees a terminal), stdout on a pipe."""

    def __init__(self, args: list[str], environ: dict, stdin_too: bool = False) -> None:
        import pty

        self.master, replica = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=environ,
            stdin=replica if stdin_too else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=replica,
        )
        os.close(replica)
        self.seen = b""

    def read_until(self, text: str, timeout: float = 30) -> str:
        """stderr so far, once `text` is on it (a pty turns "\\n" into "\\r\\n")."""
        deadline = time.monotonic() + timeout
        while text not in self.seen.decode(errors="replace").replace("\r\n", "\n"):
            assert time.monotonic() < deadline, f"{text!r} not on the terminal: {self.seen!r}"
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the command exited: its side of the pty is closed
                    break
        return self.seen.decode().replace("\r\n", "\n")

    def stdout_so_far(self) -> bytes:
        ready = select.select([self.process.stdout], [], [], 0)[0]
        return os.read(self.process.stdout.fileno(), 4096) if ready else b""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()
        os.close(self.master)


def test_on_a_terminal_the_phases_show_as_they_run_and_stdout_gets_the_reply_only(database, vendor):
    play_pears(vendor)
    terminal = Terminal(["chat", "How much are two pears?"], {**env(database, vendor), **TOOLS_ENV})
    try:
        # While the model holds its tool call: the reasoning is on the terminal, dimmed.
        seen = terminal.read_until("ask the market.")
        assert seen.startswith("Thinking…\nReasoning…\n\x1b[2mPears: "), seen
        assert seen.endswith("ask the market.\x1b[0m")
        assert re.sub(r"\x1b\[[02]m", "", seen) == "Thinking…\nReasoning…\nPears: ask the market."
        assert "Running tool" not in seen
        assert terminal.stdout_so_far() == b""
        vendor.gate("call").set()
        seen = terminal.read_until(" ms\n")
        assert re.search(r"\nRunning tool fruit_price…\nfruit_price done in \d+ ms\n", seen), seen
        assert terminal.stdout_so_far() == b""
        vendor.gate("answer").set()
        assert terminal.process.wait(30) == 0
        seen = terminal.read_until("[complete]")
        assert terminal.process.stdout.read() == b"Two pears cost 10.\n"
        assert seen.index("fruit_price done") < seen.index("[complete] conversation")
    finally:
        terminal.close()


def test_in_a_pipe_phases_show_only_with_reasoning_and_never_on_stdout(database, vendor):
    environ = {**env(database, vendor), **TOOLS_ENV}
    for flags in ([], ["--reasoning"]):
        play_pears(vendor)
        vendor.gate("call").set()
        vendor.gate("answer").set()
        result = run_manage(["chat", *flags, "How much are two pears?"], environ)
        assert (result.returncode, result.stdout) == (0, "Two pears cost 10.\n"), result.stderr
        assert "\x1b" not in result.stderr  # no terminal: no colour codes
        phases = result.stderr.split("[complete]")[0]
        if flags:
            assert re.search(
                r"(^|\n)(Thinking…\n)?Reasoning…\nPears: ask the market.\n"
                r"Running tool fruit_price…\nfruit_price done in \d+ ms\n$",
                phases,
            ), phases
        else:
            assert not re.search("Thinking|Reasoning|Running tool|done in", phases), phases


def test_help_says_what_happens_without_a_question(database):
    result = run_manage(["chat", "--help"], env(database))
    text = " ".join(result.stdout.split())
    assert "read from stdin to its end when stdin is a pipe or a file" in text
    assert "in a terminal the command asks for one and exits, it does not prompt" in text
    assert "--reasoning" in text
    # What it says is what it does: a pipe is read, a terminal is told.
    piped = run_manage(["chat", "-m", "demo"], {**env(database), "CHAT_DEMO_RATE": "0"}, input="From a pipe")
    assert piped.returncode == 0 and "“From a pipe”" in piped.stdout, piped.stderr
    terminal = Terminal(["chat"], env(database), stdin_too=True)
    try:
        assert 'Say what to ask: manage.py chat "your question"' in terminal.read_until("question")
        assert terminal.process.wait(30) != 0
    finally:
        terminal.close()
