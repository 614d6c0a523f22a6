"""`python -m bench.followed_only [--quick] [--profile DIR]`: scenario 5 alone, as bench/run.py runs it.

Also prints the Redis commands per second of the two-process run; with --profile, py-spy
samples its generating (A) and serving (B) server through the measured window (raw stacks).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import followed as scenario
from bench.load import run_on_new_loop
from bench.scenarios import FULL, QUICK
from bench.servers import prepare_database

CLIENT_CPU = 1


def _commands(url: str) -> dict[str, int]:
    """Calls per command so far (INFO commandstats)."""
    import redis

    with redis.Redis.from_url(url) as client:
        return {
            name.removeprefix("cmdstat_"): row["calls"] for name, row in client.info("commandstats").items()
        }


def instrumented(directory: Path | None, seconds: float, native: bool) -> dict:
    """The Redis run's commands per second through its measured window (measure()'s two clock()
    calls bound it), and with `directory`, py-spy's raw stacks of both servers over it."""
    measure, clock = scenario.measure, scenario.clock
    state: dict = {"run": None, "calls": {}}
    spies: list[subprocess.Popen] = []
    py_spy = str(Path(sys.executable).with_name("py-spy"))

    def window_clock() -> float:
        run = state["run"]
        now = clock()
        if run is None:
            return now
        servers, url, marks = run
        marks.append((now, _commands(url)))
        if len(marks) == 1 and directory is not None:
            for name, server in zip("AB", servers, strict=True):
                out = directory / f"{name}.txt"
                args = [py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--rate", "200"]
                args += ["--duration", str(int(seconds)), "-o", str(out)]
                args.append("--native" if native else "--nonblocking")  # py-spy has not both
                spies.append(subprocess.Popen(args, stderr=subprocess.DEVNULL))
        elif len(marks) == 2:
            (t0, c0), (t1, c1) = marks
            state["calls"] = {
                k: round((v - c0.get(k, 0)) / (t1 - t0), 1) for k, v in c1.items() if v > c0.get(k, 0)
            }
        return now

    async def run(generator, follower, others, sizes, n):
        state["run"] = None if generator is follower else ([generator, follower], others[0].url, [])
        try:
            return await measure(generator, follower, others, sizes, n)
        finally:
            state["run"] = None
            if generator is not follower:  # what the servers logged (a failover says so)
                state["logged"] = [line for s in (generator, follower) for line in s.lines][-20:]
            for proc in spies:
                await asyncio.to_thread(proc.wait)

    scenario.measure, scenario.clock = run, window_clock
    return state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", type=Path, help="a directory for py-spy's raw stacks of A and B")
    parser.add_argument("--native", action="store_true", help="py-spy samples C frames too")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    os.sched_setaffinity(0, {CLIENT_CPU})
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    state = instrumented(args.profile, sizes.paced_window, args.native)
    with tempfile.TemporaryDirectory(prefix="chat-followed-") as tmp:
        workdir = Path(tmp)
        template = workdir / "template.sqlite3"
        prepare_database(template)
        result = run_on_new_loop(scenario.followed(template, workdir, sizes))
    if result is not None:
        result["redis_calls_per_second"] = state["calls"]
        result["redis_run_logged"] = state.get("logged", [])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
