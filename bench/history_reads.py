"""`python -m bench.history_reads [--database sqlite|postgres]`: three ways to read the part of a
6,000-message conversation that fits CHAT_CONTEXT_CHARS, timed in one process (no server).

- all rows: what a send did before issue 9 (every turn read, then `context.fit`);
- newest first, in chunks: what it does now (`context.turns_newest_first`, `fit_newest`);
- running sum: one query whose window function sums the lengths in the database and returns
  only the rows that fit (the road not taken; it is portable, but the database still reads
  every row of the conversation to sum it).

Each is run 30 times; the median time and the peak of Python memory (tracemalloc) of one call
are printed.
"""

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.bigconv import Sizes, postgres_url, prepare, server_env, sqlite_url

WINDOW = """
SELECT role, content FROM (
    SELECT role, content, created_at, id, SUM(LENGTH(content)) OVER (
        ORDER BY created_at DESC, id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    ) AS newer
    FROM chat_message
    WHERE conversation_id = %s AND role IN ('user', 'assistant') AND content <> ''
) AS turns
WHERE COALESCE(newer, 0) <= %s
ORDER BY created_at DESC, id DESC
"""


def strategies(conversation_id: str, budget: int) -> dict:
    from django.db import connection

    from chat import context
    from chat.models import Message
    from chat.providers import Turn

    new = Turn("user", "And now?")
    pk = Message._meta.pk.to_python(conversation_id)
    db_id = pk if connection.features.has_native_uuid_field else pk.hex

    def all_rows():
        rows = (
            Message.objects.filter(conversation_id=pk, role__in=["user", "assistant"])
            .exclude(content="")
            .order_by("created_at")
            .values_list("role", "content")
        )
        return context.fit("", [*(Turn(r, c) for r, c in rows), new], budget)

    def chunks():
        return context.fit_newest("", itertools.chain([new], context.turns_newest_first(pk)), budget)

    def running_sum():
        with connection.cursor() as cursor:
            cursor.execute(WINDOW, [db_id, budget - len(new.content)])
            rows = cursor.fetchall()
        return context.fit_newest("", [new, *(Turn(r, c) for r, c in rows)], budget)

    return {"all rows": all_rows, "newest first, in chunks": chunks, "running sum (window)": running_sum}


def measure(conversation_id: str, budget: int, repeat: int) -> list[tuple[str, float, float, int]]:
    out = []
    reference = None
    for name, read in strategies(conversation_id, budget).items():
        turns = read()  # warm
        reference = reference or turns
        assert turns == reference, name
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            read()
            times.append((time.perf_counter() - t0) * 1000)
        tracemalloc.start()
        read()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out.append((name, statistics.median(times), peak / 1e6, len(turns)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    sizes = Sizes()
    with tempfile.TemporaryDirectory(prefix="chat-reads-") as workdir:
        if args.database == "postgres":
            database = postgres_url(os.environ["DATABASE_URL"])
        else:
            database = sqlite_url(Path(workdir))
        with database as url:
            env = server_env(url)
            prepared = prepare(env, sizes)
            os.environ.update(env)
            import django

            django.setup()
            rows = measure(prepared["conversation"], args.budget, args.repeat)
            from django.db import connection

            connection.close()
    print(
        f"{args.database}: {sizes.messages:,} messages, {prepared['chars']:,} characters; "
        f"budget {args.budget:,} characters; median of {args.repeat}\n"
    )
    print("| read | time (ms) | Python memory peak (MB) | turns kept |")
    print("| --- | --: | --: | --: |")
    for name, ms, mb, kept in rows:
        print(f"| {name} | {ms:.1f} | {mb:.1f} | {kept} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
