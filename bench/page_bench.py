"""How the chat page copes with a long reply streamed as fast as the server can send it.

    .venv/bin/python bench/page_bench.py [--tokens 1000,2000,5000,10000] [--repeat 3]

For each length, a fresh server (`manage.py runserver`, demo model with CHAT_DEMO_RATE=0 and
CHAT_DEMO_TOKENS=<n>: a reply of paragraphs, lists and fenced code) and a fresh tab in
Debian's Chromium (headless, driven by Playwright). The page sends one message and the
reply streams in; measured in the tab, from the send to the reply's end:

- main thread: the renderer's busy time (Chrome's TaskDuration, of which ScriptDuration
  is JavaScript), from the DevTools Performance domain;
- longest frame: the longest gap between two animation frames, and the longest "long
  animation frame" Chrome reports (work + rendering of one frame);
- long tasks: tasks over 50 ms;
- rendering: the page's own animation-frame callbacks (its Markdown rendering), total and
  longest. `--naive` replaces the renderer by one that renders the whole reply every frame,
  as the slow peers do, for comparison.

Not a pass/fail test: it prints a table and writes bench/results/page-<time>.json.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.page.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

INSTRUMENT = """
(() => {
  const bench = (window.__bench = { frames: [], loaf: [], longtasks: [], running: false });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (bench.running) bench.longtasks.push(e.duration);
  }).observe({ type: "longtask", buffered: false });
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (bench.running) bench.loaf.push(e.duration);
    }).observe({ type: "long-animation-frame", buffered: false });
  } catch {}
  // Time the page's own animation-frame callbacks: its rendering of the reply.
  bench.renders = [];
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (callback) =>
    raf((now) => {
      const start = performance.now();
      try {
        callback(now);
      } finally {
        if (bench.running) bench.renders.push(performance.now() - start);
      }
    });
  let last = 0;
  const tick = (now) => {
    if (bench.running && last) bench.frames.push(now - last);
    last = now;
    raf(tick);
  };
  raf(tick);
})();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tokens: int | None, database: str, rate: float = 0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{database}",
            "CHAT_DEMO_RATE": str(rate),
            "CHAT_DEMO_TOKENS": "" if tokens is None else str(tokens),
            "DEBUG": "1",
            "CHAT_LOG_LEVEL": "WARNING",
        }
        env.pop("REDIS_URL", None)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
        self.process = subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{self.port}", "--noreload", "--skip-checks"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


def metrics(cdp) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


# What the slow peers do, for comparison: parse and render the whole reply on every frame.
NAIVE = """async () => {
  const { MarkdownView, renderMarkdown } = await import("/static/chat/markdown.js");
  MarkdownView.prototype.render = function () {
    this.root.replaceChildren(renderMarkdown(this.text));
    return true;
  };
}"""


def measure(browser, url: str, question: str, naive: bool = False) -> dict:
    context = browser.new_context(base_url=url, viewport={"width": 1100, "height": 800})
    context.add_init_script(INSTRUMENT)
    page = context.new_page()
    page.goto("/")
    page.wait_for_selector(".app.ready")
    if naive:
        page.evaluate(NAIVE)
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
    before = metrics(cdp)
    page.evaluate("window.__bench.running = true")
    started = time.perf_counter()
    page.fill("#prompt", question)
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.assistant[data-status]", timeout=300_000)
    wall = time.perf_counter() - started
    page.evaluate("window.__bench.running = false")
    after = metrics(cdp)
    data = page.evaluate("window.__bench")
    length = page.evaluate("document.querySelector('.msg.assistant .markdown').textContent.length")
    blocks = page.locator(".msg.assistant .code-block").count()
    context.close()
    frames = data["frames"] or [0]
    return {
        "wall_s": wall,
        "main_thread_ms": (after["TaskDuration"] - before["TaskDuration"]) * 1000,
        "script_ms": (after["ScriptDuration"] - before["ScriptDuration"]) * 1000,
        "layout_style_ms": (
            after["LayoutDuration"]
            - before["LayoutDuration"]
            + after["RecalcStyleDuration"]
            - before["RecalcStyleDuration"]
        )
        * 1000,
        "render_ms": sum(data["renders"]),
        "longest_render_ms": max(data["renders"], default=0),
        "frames": len(data["frames"]),
        "longest_frame_gap_ms": max(frames),
        "p95_frame_gap_ms": sorted(frames)[int(len(frames) * 0.95) - 1] if len(frames) > 1 else frames[0],
        "longest_loaf_ms": max(data["loaf"], default=0),
        "long_tasks": len(data["longtasks"]),
        "longest_task_ms": max(data["longtasks"], default=0),
        "rendered_chars": length,
        "code_blocks": blocks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="1000,2000,5000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0, help="demo tokens per second (0: as fast as it can)")
    parser.add_argument("--naive", action="store_true", help="render the whole reply every frame instead")
    args = parser.parse_args()
    sizes = [int(n) for n in args.tokens.split(",")]

    from playwright.sync_api import sync_playwright

    results = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for i, tokens in enumerate(sizes):
            server = Server(tokens, f"{tmp}/bench.sqlite3", rate=args.rate)
            try:
                if i == 0:
                    measure(browser, server.url, "warm up")
                runs = [
                    measure(browser, server.url, f"Benchmark {tokens} #{r}", naive=args.naive)
                    for r in range(args.repeat)
                ]
            finally:
                server.stop()
            median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            results.append({"tokens": tokens, "median": median, "runs": runs})
        browser.close()

    mode = "naive: whole reply re-rendered every frame" if args.naive else "the page as it is"
    mode += f", demo rate {args.rate:g} tokens/s" if args.rate else ", as fast as the server sends"
    print(f"Chromium {CHROMIUM}, {os.cpu_count()} CPUs, median of {args.repeat} runs per length ({mode})\n")
    header = (
        "tokens",
        "chars",
        "code blocks",
        "stream s",
        "main thread ms",
        "of it JS ms",
        "rendering ms",
        "longest render ms",
        "frames",
        "longest frame ms",
        "p95 frame ms",
        "longest LoAF ms",
        "tasks >50ms",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in results:
        m = r["median"]
        row = (
            r["tokens"],
            int(m["rendered_chars"]),
            int(m["code_blocks"]),
            f"{m['wall_s']:.2f}",
            f"{m['main_thread_ms']:.0f}",
            f"{m['script_ms']:.0f}",
            f"{m['render_ms']:.0f}",
            f"{m['longest_render_ms']:.1f}",
            int(m["frames"]),
            f"{m['longest_frame_gap_ms']:.0f}",
            f"{m['p95_frame_gap_ms']:.0f}",
            f"{m['longest_loaf_ms']:.0f}",
            int(m["long_tasks"]),
        )
        print(" | ".join(str(c) for c in row))
    if len(results) > 1:
        first, last = results[0], results[-1]
        ratio = last["tokens"] / first["tokens"]
        grew = last["median"]["main_thread_ms"] / max(first["median"]["main_thread_ms"], 1e-9)
        rendering = last["median"]["render_ms"] / max(first["median"]["render_ms"], 1e-9)
        print(
            f"\n{ratio:.0f}x the tokens: {grew:.1f}x the main-thread time, "
            f"{rendering:.1f}x the rendering time (linear would be {ratio:.0f}x)."
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"page-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nWrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
