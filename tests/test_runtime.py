"""The runtime owns what runs: started and stopped twice in one process, it leaves nothing.

Both cycles run in a process of their own (tests/runtime_cycles.py), as a server's would: a
reply streaming and followed, a limiter, a tool on the tools' threads, a background task as a
model-written title's; then stop. The suite's own live server shares this test process, so
the process asked about is a fresh one, whose every thread and task is known.
"""

import json
import subprocess

import pytest

from tests.conftest import need_service
from tests.processes import PYTHON, ROOT, migrate, server_env


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_the_runtime_started_and_stopped_twice_leaves_no_thread_and_no_task(tmp_path, backend):
    env = server_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", CHAT_DEMO_RATE="50", CHAT_DEMO_TOKENS="400")
    if backend == "redis":
        env.update(REDIS_URL=need_service("REDIS_URL"), CHAT_REDIS_PREFIX=f"chat-runtime-{tmp_path.name}:")
        env.update(CHAT_LIMITS_PREFIX=f"chat-runtime-{tmp_path.name}")
    migrate(env)
    done = subprocess.run(
        [PYTHON, "-m", "tests.runtime_cycles"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    cycles = json.loads(done.stdout.splitlines()[-1])
    expected = {"tool": 7, "reply": "interrupted", "tasks": [], "threads": []}
    assert cycles == [expected, expected], done.stderr
