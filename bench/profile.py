"""`python -m bench.profile SCENARIO [--target app|baseline]`: one scenario under py-spy.

Starts the server as `bench.run` does (pinned to the server CPU), attaches `py-spy record` to
it for the length of the scenario, and prints the scenario's figures and the profile's top:
the functions with the most samples on the stack (total) and at its top (self), as a share of
the samples. Only the thread holding the GIL is sampled (`--gil`): the samples are the
Python work, not threads waiting. The collapsed stacks are kept in bench/results/profile-SCENARIO-TARGET.txt.
Needs py-spy (`.venv/bin/pip install py-spy`; it reads the server's memory: run as root).
`--syscalls` counts the server's system calls with strace instead, per reply.
"""

import argparse
import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import scenarios
from bench.load import new_loop
from bench.report import RESULTS
from bench.scenarios import FULL, QUICK, Sizes
from bench.servers import Server, base_env, copy_database, prepare_database

CLIENT_CPU = 1


def _scenario(name: str, sizes: Sizes):
    """(environment, run) of a scenario of bench.run."""
    if name == "burst":
        return scenarios.burst_env(sizes), lambda s: scenarios.burst(s, sizes)
    if name == "first":
        return scenarios.first_env(sizes), lambda s: scenarios.first_events(s, sizes)
    if name == "idle":
        return scenarios.IDLE_ENV, lambda s: scenarios.idle(s, sizes)
    if name == "flat":
        return scenarios.flat_env(sizes), lambda s: scenarios.flat_out(s, sizes)
    if name.startswith("paced-"):
        n = int(name.removeprefix("paced-"))
        return scenarios.paced_levels_env(sizes), lambda s: scenarios.paced(s, sizes, n)
    raise SystemExit(f"unknown scenario {name!r}: burst, first, idle, flat or paced-N")


def _user_system(pid: int) -> tuple[float, float]:
    """The server's user and system CPU seconds so far (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if "ctxt_switches" in line:
                total += int(line.split()[1])
    return total


def thread_cpu(pid: int) -> Counter:
    """CPU seconds so far: the event loop's thread (the main one) and the others (Python's
    thread names do not reach the OS on 3.11)."""
    tick, seconds = os.sysconf("SC_CLK_TCK"), Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = "event loop" if task.name == str(pid) else "other threads"
        fields = stat.rsplit(")", 1)[1].split()
        seconds[name] += (int(fields[11]) + int(fields[12])) / tick
    return seconds


def top(collapsed: Path, count: int) -> str:
    """The top of py-spy's collapsed stacks ("frame;frame;... samples" per line)."""
    total_samples, inclusive, own = 0, Counter(), Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        n = int(samples)
        total_samples += n
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    out = [f"{total_samples} samples"]
    for title, counter in (("total (on the stack)", inclusive), ("self (at the top)", own)):
        out.append(f"\n{title}:")
        for frame, n in counter.most_common(count):
            out.append(f"  {n / total_samples * 100:5.1f} %  {frame}")
    return "\n".join(out)


def _spy(server: Server, out: Path, rate: int) -> list[str]:
    return [
        shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(server.pid),
        "--format",
        "raw",
        "--rate",
        str(rate),
        "--output",
        str(out),
        "--nonblocking",
        "--gil",
    ]


def _strace(server: Server, out: Path) -> list[str]:
    """System calls of every thread of the server, counted (`strace -c`): a count, unlike the
    time, that is the same on a fast host and a slow one, where each call may cost more."""
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit("strace is not installed (Debian's strace package)")
    return [strace, "-c", "-f", "-q", "-o", str(out), "-p", str(server.pid)]


async def _run(server: Server, run, watcher: list[str]) -> dict:
    spy = subprocess.Popen(  # noqa: ASYNC220 - started once, waited for in a thread below
        watcher, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await asyncio.sleep(1.0)  # py-spy (or strace) attached
    try:
        return await run(server)
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        await asyncio.to_thread(spy.wait, 30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--target", default="app", choices=("app", "baseline"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-spy", action="store_true", help="the scenario's figures only")
    parser.add_argument(
        "--syscalls", action="store_true", help="count the server's system calls (strace) instead of py-spy"
    )
    parser.add_argument(
        "--burst-tokens", type=int, help="tokens per burst reply (1: what opening a reply costs)"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.burst_tokens:
        sizes = dataclasses.replace(sizes, burst_tokens=args.burst_tokens)
    env, run = _scenario(args.scenario, sizes)
    os.sched_setaffinity(0, {CLIENT_CPU} if (os.cpu_count() or 1) > 1 else {0})
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"profile-{args.scenario}-{args.target}.txt"
    with tempfile.TemporaryDirectory(prefix="chat-profile-") as workdir:
        template = Path(workdir) / "template.sqlite3"
        prepare_database(template)
        database = copy_database(template, Path(workdir) / "run.sqlite3")
        server = Server(args.target, base_env(database, **env)).start()
        loop = new_loop()
        try:
            if args.no_spy:
                measured = run(server)
            elif args.syscalls:
                out = out.with_name(f"syscalls-{args.scenario}-{args.target}.txt")
                measured = _run(server, run, _strace(server, out))
            else:
                measured = _run(server, run, _spy(server, out, args.rate))
            before, threads_before = _user_system(server.pid), thread_cpu(server.pid)
            result = loop.run_until_complete(measured)
            after, threads = _user_system(server.pid), thread_cpu(server.pid)
            threads.subtract(threads_before)
            result["server_user_s"], result["server_system_s"] = (
                a - b for a, b in zip(after, before, strict=True)
            )
            switches = _switches(server.pid)
        finally:
            loop.close()
            server.stop()
    for key, value in result.items():
        print(f"{key}: {value}")
    print(f"context switches (whole server life, all threads): {switches}")
    print("server CPU by thread: " + ", ".join(f"{name} {s:.2f} s" for name, s in threads.most_common() if s))
    if args.syscalls:
        print()
        print(syscalls(out, result.get("replies") or result.get("streams") or 1, args.top))
    elif not args.no_spy:
        print()
        print(top(out, args.top))
    return 0


def syscalls(summary: Path, per: int, count: int) -> str:
    """strace's table (`-c`) as calls per reply (per stream where the scenario has no replies).
    The burst with one token a reply (`burst --syscalls --burst-tokens 1`) counts what opening a
    reply asks of the kernel; the warm-up's few replies are counted with them."""
    rows = []
    for line in summary.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            rows.append((int(fields[3]), fields[-1]))
    rows.sort(reverse=True)
    out = [f"system calls per reply (or stream), {per:,} of them: {sum(n for n, _ in rows) / per:.1f}"]
    out += [f"  {n / per:8.1f}  {name}" for n, name in rows[:count]]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
