"""`python -m bench.search [--database sqlite|postgres|both] [--quick]`: search at volume (issue 29).

One owner with 10,000 conversations of 50 messages (500,000 messages, chains: each message's
parent is the one before it) is seeded into a fresh database (a temporary SQLite file, and a
database of its own on DATABASE_URL's PostgreSQL server), with the index kept by the app's
own triggers as the rows go in. Texts are drawn from a vocabulary of 8,000 made-up words with
Zipf's frequencies (the commonest is in nearly every message, most are rare), with some
accented words among them. Then 200 searches of mixed kinds (a common word, a middling one, a
rare one, two words, an accented word typed without its accents in capitals, a word that is
nowhere) are timed through the service (`chat.search.conversation_search`: the queries, the
conversations read, the snippets made), after 20 to warm up. Each database is seeded and
searched in a process of its own, configured as a server would be (DEBUG off).
Results: a table on stdout and bench/results/search.json (`--out`).
"""

import argparse
import dataclasses
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCENTED = ["café", "naïve", "résumé", "Zürich", "élan", "façade", "piñata", "crème", "déjà", "Øresund"]
KINDS = ("common", "middling", "rare", "two words", "accents", "no match")


@dataclass(frozen=True)
class Sizes:
    conversations: int = 10_000
    messages: int = 50
    words: tuple[int, int] = (8, 60)
    searches: int = 200
    warmup: int = 20


QUICK = Sizes(conversations=1000, searches=60, warmup=10)


def vocabulary(rnd: random.Random, size: int = 8000) -> list[str]:
    syllables = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "il", "or")]
    words: list[str] = []
    seen = set()
    while len(words) < size:
        word = "".join(rnd.choices(syllables, k=rnd.choice((2, 2, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    for i, accented in enumerate(ACCENTED):  # middling frequencies
        words[150 + 40 * i] = accented
    return words


def texts(rnd: random.Random, words: list[str]):
    weights = list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))
    while True:
        yield " ".join(rnd.choices(words, cum_weights=weights, k=rnd.randrange(*Sizes.words)))


def queries(rnd: random.Random, words: list[str], n: int) -> list[tuple[str, str]]:
    def strip(word: str) -> str:
        import unicodedata

        return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))

    made = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        if kind == "common":
            q = rnd.choice(words[:20])
        elif kind == "middling":
            q = rnd.choice(words[100:1000])
        elif kind == "rare":
            q = rnd.choice(words[5000:])
        elif kind == "two words":
            q = f"{rnd.choice(words[20:300])} {rnd.choice(words[:50])}"
        elif kind == "accents":
            q = strip(rnd.choice(ACCENTED)).upper()
        else:
            q = f"zq{rnd.randrange(10**6)}x"
        made.append((kind, q))
    rnd.shuffle(made)
    return made


# --- in the worker process (configured as the server) ----------------------------------------


def seed(sizes: Sizes) -> tuple[object, list[str], float]:
    from django.db import connection, transaction
    from django.utils import timezone

    from chat.models import Conversation, Message
    from chat.services import Owner

    rnd = random.Random(29)
    words = vocabulary(rnd)
    text = texts(rnd, words)
    owner = Owner(visitor=uuid.uuid4().hex)
    native = connection.features.has_native_uuid_field
    as_db = (lambda u: u) if native else (lambda u: u.hex)
    at = connection.ops.adapt_datetimefield_value
    now = timezone.now()
    q = connection.ops.quote_name
    columns = ["id", "conversation_id", "parent_id", "role", "content", "status", "model"]
    columns += ["created_at", "updated_at", "stop_requested"]
    insert = (
        f"INSERT INTO {q(Message._meta.db_table)} ({', '.join(map(q, columns))}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    t0 = time.monotonic()
    for start in range(0, sizes.conversations, 1000):
        made, rows = [], []
        for _ in range(start, min(start + 1000, sizes.conversations)):
            began = now - timedelta(days=rnd.randrange(365), seconds=rnd.randrange(86_400))
            title = " ".join(next(text).split()[:4])
            conversation = Conversation(
                visitor=owner.visitor,
                title=title,
                model="demo",
                created_at=began,
                updated_at=began + timedelta(seconds=30 * sizes.messages),
            )
            made.append(conversation)
            parent = None
            for j in range(sizes.messages):
                message_id = uuid.uuid4()
                when = at(began + timedelta(seconds=30 * j))
                role = "assistant" if j % 2 else "user"
                rows.append(
                    (as_db(message_id), as_db(conversation.id), parent, role, next(text), "complete", "demo")
                    + (when, when, False)
                )
                parent = as_db(message_id)
        with transaction.atomic():
            Conversation.objects.bulk_create(made)
            with connection.cursor() as cursor:
                cursor.executemany(insert, rows)
        print(f"  seeded {start + len(made):,} conversations ({time.monotonic() - t0:.0f} s)", flush=True)
    seconds = time.monotonic() - t0
    with connection.cursor() as cursor:  # as autovacuum (PostgreSQL) or `PRAGMA optimize` would
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    return owner, words, seconds


def worker(sizes: Sizes) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.scenarios import percentile
    from chat.search import conversation_search

    call_command("migrate", verbosity=0)
    owner, words, seed_s = seed(sizes)
    rnd = random.Random(7)
    for _, q in queries(rnd, words, sizes.warmup):
        conversation_search(owner=owner, q=q)
    timed: dict[str, list[float]] = {kind: [] for kind in KINDS}
    found: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for kind, q in queries(rnd, words, sizes.searches):
        t0 = time.perf_counter()
        hits = conversation_search(owner=owner, q=q)
        timed[kind].append((time.perf_counter() - t0) * 1000)
        found[kind].append(len(hits))
    every = [ms for values in timed.values() for ms in values]
    return {
        "database": connection.vendor,
        "conversations": sizes.conversations,
        "messages": sizes.conversations * sizes.messages,
        "seed_s": round(seed_s, 1),
        "searches": len(every),
        "p50_ms": round(percentile(every, 50), 1),
        "p95_ms": round(percentile(every, 95), 1),
        "max_ms": round(max(every), 1),
        "kinds": {
            kind: {
                "p50_ms": round(percentile(values, 50), 1),
                "p95_ms": round(percentile(values, 95), 1),
                "mean_results": round(statistics.mean(found[kind]), 1),
            }
            for kind, values in timed.items()
            if values
        },
    }


# --- the driver ------------------------------------------------------------------------------


def run(database_url: str, sizes: Sizes) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-" + "x" * 40,
        "PYTHONUNBUFFERED": "1",
    }
    args = [sys.executable, "-m", "bench.search", "--worker", "--conversations", str(sizes.conversations)]
    args += ["--searches", str(sizes.searches), "--warmup", str(sizes.warmup)]
    done = subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True)
    lines = done.stdout.rstrip().splitlines()
    print("\n".join(lines[:-1]))
    return json.loads(lines[-1])


def on_postgres(url: str, sizes: Sizes) -> dict:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"chat_search_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return run(urlunsplit(urlsplit(url)._replace(path=f"/{name}")), sizes)
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--conversations", type=int, help="instead of 10,000 (1,000 with --quick)")
    parser.add_argument("--searches", type=int, help="timed searches, instead of 200 (60 with --quick)")
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search.json")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    for name in ("conversations", "searches", "warmup"):
        if getattr(args, name) is not None:
            sizes = dataclasses.replace(sizes, **{name: getattr(args, name)})
    if args.worker:
        print(json.dumps(worker(sizes)))
        return
    results = []
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="chat-search-bench-") as workdir:
            print("SQLite (FTS5)", flush=True)
            results.append(run(f"sqlite:///{workdir}/search.sqlite3", sizes))
    if args.database in ("postgres", "both"):
        url = os.environ.get("DATABASE_URL", "")
        if url.startswith(("postgres://", "postgresql://")):
            print("PostgreSQL (tsvector, GIN)", flush=True)
            results.append(on_postgres(url, sizes))
        else:
            print("PostgreSQL: skipped (DATABASE_URL is not a PostgreSQL URL)")
    print(f"\nMachine: {machine()}")
    print(f"{'database':<12}{'messages':>10}{'seed s':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for r in results:
        print(
            f"{r['database']:<12}{r['messages']:>10,}{r['seed_s']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['max_ms']:>9}"
        )
        for kind, k in r["kinds"].items():
            print(
                f"  {kind:<12} p50 {k['p50_ms']:>7} ms  p95 {k['p95_ms']:>7} ms  results {k['mean_results']}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
