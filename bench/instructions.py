"""`python -m bench.instructions [N] [--target app|baseline]`: instructions per reply opened,
counted by callgrind (valgrind), not timed.

Serves the target with uvicorn on this process's loop (bench.servers.in_process), warms it up,
then opens N replies of one token one after another, each read to its end, and counts every
instruction the process runs meanwhile, all threads, the load client's included (the
baseline's opening counts the same client). Two calls mark the window for callgrind:
`os.getppid()` zeroes its counts, `os.getpgrp()` dumps them. On a shared VM whose speed moves
by a fifth between runs, this count is the same from run to run of the same code (issue 14
measured each change of the opening with it).
"""

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def _open(port: int, replies: int) -> None:
    from bench import scenarios
    from bench.load import Client

    client = Client(port)
    await client.warm_up(scenarios.QUESTION)
    for _ in range(20):  # the server's caches and pooled threads, as they are in use
        stream = await client.open_stream(scenarios.QUESTION)
        await stream.finished
        stream.close()
    await asyncio.sleep(1.2)  # the warm-up's checkpoints and write-ahead log copy done
    os.getppid()  # callgrind: counts start here
    for _ in range(replies):
        stream = await client.open_stream(scenarios.QUESTION)
        await stream.finished
        stream.close()
    await asyncio.sleep(1.2)  # the last replies' checkpoints and log copy, counted
    os.getpgrp()  # callgrind: counts dumped here


def inside(replies: int, target: str) -> None:
    from bench import servers

    servers.TARGETS["app"] = servers.TARGETS[target]
    servers.measure_in_process({"CHAT_DEMO_RATE": "1000", "CHAT_DEMO_TOKENS": "1"}, _open, replies)


def count(replies: int, target: str) -> float:
    """Instructions per reply opened (thousands)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (Debian's valgrind package)")
    with tempfile.TemporaryDirectory(prefix="chat-callgrind-") as work:
        out = Path(work) / "callgrind.out"
        subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--zero-before=os_getppid",
                "--dump-before=os_getpgrp",
                sys.executable,
                "-m",
                "bench.instructions",
                "--inside",
                str(replies),
                "--target",
                target,
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        dump = Path(f"{out}.1").read_text()
    summary = next(line for line in dump.splitlines() if line.startswith("summary:"))
    return int(summary.split()[1]) / replies / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("replies", nargs="?", type=int, default=100)
    parser.add_argument("--target", default="app", choices=("app", "baseline"))
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        inside(args.replies, args.target)
        return 0
    per_reply = count(args.replies, args.target)
    opened = f"({args.replies} replies, one token each)"
    print(f"{args.target}: {per_reply:,.0f} K instructions per reply opened {opened}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
