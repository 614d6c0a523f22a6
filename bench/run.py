"""`python -m bench.run [--quick] [--publish]`: the app and the bare ASGI baseline, side by side.

For each scenario the app and then the baseline are started (uvicorn, pinned to CPU 0), driven
by the same client (this process, pinned to CPU 1) and stopped. Results: a table on stdout,
bench/results/latest.md and latest.json; `--publish` also writes bench/RESULTS.md.
"""

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import limits, report, scenarios
from bench.followed import followed
from bench.load import run_on_new_loop
from bench.scenarios import FULL, QUICK, Sizes
from bench.servers import SERVER_CPU, Server, base_env, copy_database, count_writes, prepare_database

CLIENT_CPU = 1
# The app, the bare ASGI baseline, and the obvious Django view as a peer (bench/django_peer.py).
WITH_PEER = ("app", "baseline", "django")
LOCKED = "database is locked"


class Bench:
    def __init__(self, sizes: Sizes, workdir: Path) -> None:
        self.sizes, self.workdir = sizes, workdir
        self.template = workdir / "template.sqlite3"
        prepare_database(self.template)
        self.runs = 0
        self.locked = {"app": 0, "baseline": 0, "django": 0}
        self.client_busy = {"app": 0.0, "baseline": 0.0, "django": 0.0}
        self.databases: dict[str, Path] = {}
        self.counted = {"flat", f"paced-{sizes.paced_levels[0]}"}

    async def measure(
        self, name: str, target: str, env: dict[str, str], run: Callable[[Server], Awaitable[dict]]
    ) -> dict:
        self.runs += 1
        t0 = time.monotonic()
        database = copy_database(self.template, self.workdir / f"{self.runs:02d}-{name}-{target}.sqlite3")
        if name in self.counted:  # the databases run() reads writes per reply from
            count_writes(database)
        server = Server(target, base_env(database, **env)).start()
        t1 = time.monotonic()
        print(f"  {name}: {target} (pid {server.pid}) ...", end="", flush=True)
        try:
            result = await run(server)
        finally:
            t2 = time.monotonic()
            await asyncio.sleep(0.2)  # the client's closes take effect on the loop
            await asyncio.to_thread(server.stop)
        self.locked[target] += server.output.count(LOCKED) + result.get("errors", 0)
        self.client_busy[target] = max(self.client_busy[target], result.get("client_busy", 0.0))
        if target == "app":
            self.databases[name] = database
        result["tracebacks"] = server.output.count("Traceback")
        t3 = time.monotonic()
        print(f" start {t1 - t0:.1f} s, run {t2 - t1:.1f} s, stop {t3 - t2:.1f} s", flush=True)
        return result

    async def both(
        self,
        name: str,
        env: dict[str, str],
        run: Callable[[Server], Awaitable[dict]],
        targets: tuple[str, ...] = ("app", "baseline"),
    ) -> dict:
        return {target: await self.measure(name, target, env, run) for target in targets}

    async def in_turns(
        self,
        name: str,
        env: dict[str, str],
        run: Callable[[Server], Awaitable[dict]],
        rounds: int,
        targets: tuple[str, ...] = ("app", "baseline"),
    ) -> dict:
        """`rounds` runs of each side taken in turns (app, baseline, app, ...); each side keeps
        its run with the lowest server CPU per token, and lists every run's figure.

        The machine is a shared VM whose speed moves from one half minute to the next: in two
        runs of the same code, the burst's app measured 35.0 and 44.6 µs per token and the
        baseline 32.2 and 25.5, so one run of each gave 1.09x and 1.75x. Noise only adds
        CPU; the lower of each side's runs, taken the same way for both, is the steadier
        comparison."""
        runs: dict[str, list[dict]] = {target: [] for target in targets}
        for _ in range(rounds):
            for target in runs:
                runs[target].append(await self.measure(name, target, env, run))
        kept = {}
        for target, results in runs.items():
            best = min(results, key=lambda result: result["cpu_us_per_token"])
            kept[target] = {**best, "runs_cpu_us_per_token": [r["cpu_us_per_token"] for r in results]}
        return kept

    async def paced_levels(self) -> dict:
        env = scenarios.paced_levels_env(self.sizes)
        levels, held = [], {"app": 0, "baseline": 0}
        behind: set[str] = set()
        for n in self.sizes.paced_levels:
            level: dict = {"streams": n}
            for target in ("app", "baseline"):
                if target in behind:  # it fell behind at fewer streams
                    level[target] = None
                    continue

                def run(n: int = n, target: str = target) -> Any:
                    return self.measure(
                        f"paced-{n}", target, env, lambda s: scenarios.paced(s, self.sizes, n)
                    )

                result = await run()
                if not result["held"]:
                    # Once more before a side is taken to fall behind: on a shared VM a pause of
                    # the host alone has put one run's p99 over 50 ms at half a core's load (the
                    # baseline: 82.8 ms at 1,750 streams, 57 % busy; it held 2,500 in the run
                    # before). The second run decides; the first one's p99 is kept beside it
                    # (none where its streams did not all open in time).
                    result = {**await run(), "first_p99_ms": result.get("p99_ms")}
                level[target] = result
                if result["held"]:
                    held[target] = max(held[target], n)
                else:
                    behind.add(target)
            levels.append(level)
            if len(behind) == 2:
                break
        return {"rate": scenarios.PACED_RATE, "levels": levels, "held": held}

    async def run(self) -> dict:
        s = self.sizes
        print("1. server CPU per token, flat out", flush=True)
        flat = await self.both("flat", scenarios.flat_env(s), lambda srv: scenarios.flat_out(srv, s))
        print("2. streams held at 20 tokens/s", flush=True)
        paced = await self.paced_levels()
        print("3. memory per idle stream", flush=True)
        idle = await self.both("idle", scenarios.IDLE_ENV, lambda srv: scenarios.idle(srv, s), WITH_PEER)
        print("4. first status and first text under load", flush=True)
        first = await self.both("first", scenarios.first_env(s), lambda srv: scenarios.first_events(srv, s))
        print("4b. replies in a burst: opened over a few seconds, the opening included", flush=True)
        burst = await self.in_turns(
            "burst", scenarios.burst_env(s), lambda srv: scenarios.burst(srv, s), s.burst_rounds, WITH_PEER
        )
        print("5. a reply followed from another process: in-process log, then Redis", flush=True)
        followed_result = await followed(self.template, self.workdir, s)
        print("6. server CPU a limit check adds to a send (in-process, memory and Redis)", flush=True)
        limit_check = {
            backend: await asyncio.to_thread(limits.measure, backend, s.limit_sends, SERVER_CPU)
            for backend in ("memory", "redis")
        }
        writes = {
            "flat": writes_per_reply(self.databases["flat"]),
            "paced": writes_per_reply(self.databases[f"paced-{paced['levels'][0]['streams']}"]),
        }
        return {
            "flat": flat,
            "paced": paced,
            "idle": idle,
            "first": first,
            "burst": burst,
            "followed": followed_result,
            "writes": writes,
            "limits": limit_check,
            "locked": self.locked,
            "client_busy": self.client_busy,
        }


def writes_per_reply(database: Path) -> dict:
    """Writes to each assistant message, counted by the triggers, and how long it streamed."""
    with sqlite3.connect(database) as conn:
        counts = dict(
            conn.execute(
                "SELECT message_id, COUNT(*) FROM bench_writes WHERE role = 'assistant' GROUP BY message_id"
            ).fetchall()
        )
        spans = conn.execute("SELECT id, created_at, updated_at FROM chat_message WHERE role = 'assistant'")
        seconds = {
            pk: (datetime.fromisoformat(updated) - datetime.fromisoformat(created)).total_seconds()
            for pk, created, updated in spans
        }
    if not counts:
        return {"replies": 0, "mean": None, "max": None, "per_second": None}
    total_seconds = sum(seconds.get(pk, 0.0) for pk in counts)
    return {
        "replies": len(counts),
        "mean": sum(counts.values()) / len(counts),
        "max": max(counts.values()),
        "mean_seconds": total_seconds / len(counts),
        "per_second": sum(counts.values()) / total_seconds if total_seconds else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute (a smoke test)")
    parser.add_argument("--publish", action="store_true", help="also write bench/RESULTS.md")
    parser.add_argument("--out", type=Path, default=report.RESULTS, help="where latest.md and .json go")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    os.sched_setaffinity(0, {CLIENT_CPU} if os.cpu_count() and os.cpu_count() > 1 else {0})
    started = time.monotonic()
    results = {"mode": "quick" if args.quick else "full", "sizes": asdict(sizes), "machine": report.machine()}
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as workdir:
        bench = Bench(sizes, Path(workdir))
        results.update(run_on_new_loop(bench.run()))
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["duration_s"] = time.monotonic() - started
    path = report.write(results, args.out)
    text = path.read_text()
    if args.publish:
        (Path(__file__).resolve().parent / "RESULTS.md").write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
