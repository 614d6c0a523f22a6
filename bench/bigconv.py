"""`python -m bench.bigconv [--runs 3] [--database sqlite|postgres]`: one huge conversation must
not slow anyone else (issue 9, item 5).

A 6,000-message conversation is seeded (tests/seed.py) and the app started (uvicorn, pinned to
CPU 0, DEBUG off, demo model answering 20 tokens at once). One visitor (this process, pinned
to CPU 1) sends messages to a small conversation one at a time, 25 ms apart, and each send's
time to its 201 is recorded, in three phases:

- quiet: nobody else sends;
- busy, small: a second visitor sends 10 messages a second (a script, or several tabs; a
  send starts every 100 ms whether the last one is answered or not, at most 8 at once) to a
  small conversation of its own;
- busy, medium: the same, to a conversation of 300 messages, whose newest turns already fill
  the model's budget (CHAT_CONTEXT_CHARS, 100,000 characters);
- busy, big: the same, to the 6,000-message conversation.

The same load is offered in every busy phase, so "busy, big" against "busy, medium" is the
price of a conversation's size beyond what the model is sent (nothing, if a send reads only
what fits), and against "busy, small" the price of sending the model a full budget. The
server's resident memory (VmRSS) is sampled every 20 ms; each phase reports its peak over
its start.
Results: a table on stdout and bench/results/bigconv.json (`--out`).
"""

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench import report
from bench.load import Client, clock, run_on_new_loop
from bench.scenarios import percentile
from bench.servers import ROOT, Server, base_env

CLIENT_CPU = 1
SERVER_ENV = {"CHAT_DEMO_RATE": "0", "CHAT_DEMO_TOKENS": "20"}
PHASES = ("quiet", "busy, small", "busy, medium", "busy, big")


@dataclass(frozen=True)
class Sizes:
    messages: int = 6000
    medium: int = 300  # messages of the conversation that just fills the budget
    words: tuple[int, int] = (10, 300)  # per message: about 1 KB on average
    sends: int = 150  # the other visitor's sends per phase
    interval: float = 0.025  # seconds between them
    heavy_rate: float = 10.0  # the second visitor's sends per second
    heavy_cap: int = 8  # ... and at most this many unanswered at once (more are skipped)


QUICK = Sizes(messages=600, medium=60, sends=20)


# --- databases ------------------------------------------------------------------------------


@contextmanager
def sqlite_url(workdir: Path) -> Iterator[str]:
    yield f"sqlite:///{workdir / f'bigconv-{uuid.uuid4().hex[:8]}.sqlite3'}"


@contextmanager
def postgres_url(url: str) -> Iterator[str]:
    """A database of its own on the server of `url`, dropped afterwards."""
    import psycopg

    name = f"chat_bigconv_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def server_env(database_url: str) -> dict[str, str]:
    env = base_env(Path("unused"), **SERVER_ENV)
    env["DATABASE_URL"] = database_url
    return env


def prepare(env: dict[str, str], sizes: Sizes) -> dict:
    """Migrate, then seed the big conversation: its id and a session cookie of its owner."""
    run = {"cwd": ROOT, "env": env, "check": True, "timeout": 300}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], **run)
    words, counts = f"{sizes.words[0]},{sizes.words[1]}", f"{sizes.messages},{sizes.medium}"
    args = [sys.executable, "-m", "bench.bigconv", "--seed", counts, "--words", words]
    out = subprocess.run(args, capture_output=True, text=True, **run).stdout
    return json.loads(out.strip().splitlines()[-1])


def seed(messages: int, medium: int, words: tuple[int, int]) -> dict:
    """In a process configured as the server: the big and the medium conversation, owned by
    one visitor's session."""
    import django

    django.setup()
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection

    from chat.models import Conversation
    from chat.views import VISITOR_KEY
    from tests.seed import seed_history

    [conversation] = seed_history(conversations=1, messages=messages, words=words)
    [middle] = seed_history(conversations=1, messages=medium, words=words, seed=2)
    Conversation.objects.filter(pk=middle.pk).update(visitor=conversation.visitor)
    if connection.vendor == "postgresql":  # statistics, as autovacuum keeps them on a live database
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    session = SessionStore()
    session[VISITOR_KEY] = conversation.visitor
    session.create()
    chars = sum(len(c) for c in conversation.messages.values_list("content", flat=True))
    return {
        "conversation": str(conversation.pk),
        "medium": str(middle.pk),
        "session": session.session_key,
        "chars": chars,
    }


# --- the load -------------------------------------------------------------------------------


@dataclass
class Visitor:
    client: Client
    conversation: str = ""
    times_ms: list[float] = field(default_factory=list)
    errors: int = 0

    async def new_conversation(self) -> str:
        status, response = await self.client.call("POST", "/api/conversations", {})
        assert status == 201, response[:300]
        self.conversation = json.loads(response.split(b"\r\n\r\n", 1)[1])["id"]
        return self.conversation

    async def send(self, text: str) -> float:
        t0 = clock()
        status, _ = await self.client.call(
            "POST", f"/api/conversations/{self.conversation}/messages", {"content": text}
        )
        ms = (clock() - t0) * 1000
        if status != 201:
            self.errors += 1
        self.times_ms.append(ms)
        return ms


async def sample_rss(server: Server, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(server.rss_kib())
        await asyncio.sleep(0.02)


async def phase(server: Server, other: Visitor, heavy: Visitor | None, sizes: Sizes) -> dict:
    """The other visitor's sends, one at a time, while `heavy` (if any) sends at its rate.

    The other visitor starts a conversation of its own each phase: its own history, read by
    each of its sends, is the same in every phase."""
    other.times_ms = []
    await other.new_conversation()
    stop, rss = asyncio.Event(), []
    sampler = asyncio.create_task(sample_rss(server, rss, stop))

    skipped = 0

    async def flood() -> None:
        nonlocal skipped
        sending: set[asyncio.Task] = set()
        while not stop.is_set():
            if len(sending) < sizes.heavy_cap:
                task = asyncio.create_task(heavy.send("Tell me more, please."))
                sending.add(task)
                task.add_done_callback(sending.discard)
            else:
                skipped += 1
            await asyncio.sleep(1 / sizes.heavy_rate)
        await asyncio.gather(*sending)

    if heavy is not None:
        heavy.times_ms = []
    flooding = [asyncio.create_task(flood())] if heavy is not None else []
    await asyncio.sleep(0.2)  # the flood is under way
    cpu0, t0 = server.cpu(), clock()
    for i in range(sizes.sends):
        await other.send(f"Question {i}: what is new?")
        await asyncio.sleep(sizes.interval)
    wall, cpu = clock() - t0, server.cpu() - cpu0
    stop.set()
    await asyncio.gather(sampler, *flooding)
    await asyncio.sleep(0.3)  # the last replies end
    rss.append(server.rss_kib())
    times = other.times_ms
    result = {
        "sends": len(times),
        "p50_ms": percentile(times, 50),
        "p95_ms": percentile(times, 95),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times),
        "errors": other.errors,
        "server_busy": cpu / wall,
        "server_cpu_ms_per_send": cpu * 1000 / (len(times) + len(heavy.times_ms if heavy else [])),
        "rss_start_kib": rss[0],
        "rss_peak_kib": max(rss),
        "rss_end_kib": rss[-1],
    }
    if heavy is not None:
        result["heavy_sends"] = len(heavy.times_ms)
        result["heavy_p50_ms"] = percentile(heavy.times_ms, 50)
        result["heavy_errors"] = heavy.errors
        result["heavy_skipped"] = skipped
    return result


async def one_run(env: dict[str, str], prepared: dict, sizes: Sizes) -> dict:
    server = Server("app", env).start()
    try:
        heavy = Visitor(Client(server.port, cookies={"sessionid": prepared["session"]}))
        await heavy.client.setup()  # the CSRF cookie, and an empty conversation of the same owner
        await heavy.new_conversation()
        other = Visitor(Client(server.port))
        await other.client.setup()
        await other.new_conversation()
        for _ in range(5):  # warm up, in small conversations: the big one is first read when measured
            await other.send("Warming up.")
            await heavy.send("Warming up.")
        result = {"quiet": await phase(server, other, None, sizes)}
        result["busy, small"] = await phase(server, other, heavy, sizes)
        heavy.conversation = prepared["medium"]
        result["busy, medium"] = await phase(server, other, heavy, sizes)
        heavy.conversation = prepared["conversation"]
        result["busy, big"] = await phase(server, other, heavy, sizes)
    finally:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(server.stop)
    result["tracebacks"] = server.output.count("Traceback")
    result["locked"] = server.output.count("database is locked")
    return result


# --- the table ------------------------------------------------------------------------------


def table(results: dict) -> str:
    m, s = results["machine"], results["sizes"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, uvicorn {m['uvicorn']}, "
        f"Django {m['django']}; load average at start {m['loadavg_start'][0]:.2f}, at end "
        f"{results['loadavg_end'][0]:.2f}; {m['date']}; database {results['database']}; "
        f"code {results['code']}.",
        f"Big conversation: {s['messages']:,} messages, {results['seed_chars']:,} characters; "
        f"the other visitor sends {s['sends']} times per phase, {s['interval'] * 1000:g} ms apart; "
        f"the heavy one sends {s['heavy_rate']:g} a second (at most {s['heavy_cap']} at once).",
        "",
        "| run | phase | other's send p50 / p95 / p99 / max (ms) | heavy sends (p50 ms, skipped) "
        "| server CPU busy | RSS start → peak → end (MB) |",
        "| --: | --- | --: | --: | --: | --: |",
    ]
    for n, run in enumerate(results["runs"], 1):
        for name in PHASES:
            p = run[name]
            heavy = "–"
            if "heavy_sends" in p:
                heavy = f"{p['heavy_sends']} ({p['heavy_p50_ms']:.1f}, {p['heavy_skipped']})"
            lines.append(
                f"| {n} | {name} | {p['p50_ms']:.1f} / {p['p95_ms']:.1f} / {p['p99_ms']:.1f} / "
                f"{p['max_ms']:.1f} | {heavy} | {p['server_busy'] * 100:.0f} % | "
                f"{p['rss_start_kib'] / 1024:.0f} → {p['rss_peak_kib'] / 1024:.0f} → "
                f"{p['rss_end_kib'] / 1024:.0f} |"
            )
    errors = sum(run[p]["errors"] + run[p].get("heavy_errors", 0) for run in results["runs"] for p in PHASES)
    troubles = sum(run["tracebacks"] + run["locked"] for run in results["runs"])
    lines += ["", f"Failed sends: {errors}; tracebacks and `database is locked` in the log: {troubles}."]
    return "\n".join(lines) + "\n"


def summary(files: list[Path]) -> str:
    """Runs saved by several invocations (say, before and after a change, taken in turns), by
    code version: the median over runs of each figure, and its range."""
    by_code: dict[str, list[dict]] = {}
    for path in files:
        saved = json.loads(path.read_text())
        by_code.setdefault(f"{saved['code']} ({saved['database']})", []).extend(saved["runs"])
    lines = [
        "| code | phase | runs | other's send p50 (ms) | p95 | p99 | heavy send p50 (ms) "
        "| RSS growth, peak − start (MB) |",
        "| --- | --- | --: | --: | --: | --: | --: | --: |",
    ]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"

    for code, runs in by_code.items():
        for name in PHASES:
            phases = [run[name] for run in runs]
            growth = [(p["rss_peak_kib"] - p["rss_start_kib"]) / 1024 for p in phases]
            figures = [cell([p[key] for p in phases]) for key in ("p50_ms", "p95_ms", "p99_ms")]
            figures.append(cell([p["heavy_p50_ms"] for p in phases]) if name != "quiet" else "–")
            lines.append(f"| {code} | {name} | {len(runs)} | " + " | ".join(figures) + f" | {cell(growth)} |")
    lines += ["", "The price of size, run by run: the other's p95 in `busy, big` over `busy, medium`:", ""]
    for code, runs in by_code.items():
        ratios = [run["busy, big"]["p95_ms"] / run["busy, medium"]["p95_ms"] for run in runs]
        lines.append(f"- {code}: {cell(ratios)}x; each run: " + ", ".join(f"{r:.2f}" for r in ratios))
    return "\n".join(lines) + "\n"


def code_version() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "chat"], cwd=ROOT, capture_output=True, text=True)
    return (done.stdout.strip() or "unknown") + (" + changes" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="server starts, each on a fresh database")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="600 messages, 20 sends: a smoke test")
    parser.add_argument("--out", type=Path, default=report.RESULTS / "bigconv.json")
    parser.add_argument("--summary", type=Path, nargs="+", help="print the runs saved in these files")
    parser.add_argument("--seed", help=argparse.SUPPRESS)  # internal: seed, print ids
    parser.add_argument("--messages", type=int, help="messages in the big conversation (6,000)")
    parser.add_argument("--sends", type=int, help="the other visitor's sends per phase (150)")
    parser.add_argument("--heavy-rate", type=float, help="the heavy visitor's sends per second (10)")
    parser.add_argument("--words", default="10,300", help="words per message, a range (6.5 characters each)")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.summary))
        return 0
    low, high = (int(x) for x in args.words.split(","))
    if args.seed is not None:
        big, medium = (int(x) for x in args.seed.split(","))
        print(json.dumps(seed(big, medium, (low, high))))
        return 0
    sizes = dataclasses.replace(QUICK if args.quick else Sizes(), words=(low, high))
    if args.messages:
        sizes = dataclasses.replace(sizes, messages=args.messages)
    if args.sends:
        sizes = dataclasses.replace(sizes, sends=args.sends)
    if args.heavy_rate:
        sizes = dataclasses.replace(sizes, heavy_rate=args.heavy_rate)
    if os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})
    results: dict = {"machine": report.machine(), "database": args.database, "code": code_version()}
    results["sizes"] = {**sizes.__dict__, "words": list(sizes.words)}
    results["runs"] = []
    with tempfile.TemporaryDirectory(prefix="chat-bigconv-") as workdir:
        for n in range(args.runs):
            if args.database == "postgres":
                admin = os.environ.get("DATABASE_URL", "")
                if not admin.startswith(("postgres://", "postgresql://")):
                    parser.error("--database postgres needs DATABASE_URL=postgres://...")
                database = postgres_url(admin)
            else:
                database = sqlite_url(Path(workdir))
            with database as url:
                env = server_env(url)
                prepared = prepare(env, sizes)
                results["seed_chars"] = prepared["chars"]
                print(f"run {n + 1}/{args.runs} ...", flush=True)
                results["runs"].append(run_on_new_loop(one_run(env, prepared, sizes)))
    results["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
