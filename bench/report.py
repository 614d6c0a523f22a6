"""The results as a Markdown table (printed, and written to bench/results/latest.md) and JSON."""

import json
import math
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model
            )
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "uvicorn": _version("uvicorn"),
        "django": _version("django"),
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "loadavg_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(app: float | None, base: float | None) -> float | None:
    if app is None or base is None or base == 0 or math.isinf(app) or math.isinf(base):
        return None
    return app / base


def _figures(
    what: str, app: float | None, base: float | None, digits: int = 0
) -> tuple[str, str, str, str, str, str]:
    """A row of two figures (whole unless `digits`) and their ratio, with no target."""
    return (what, _num(app, digits), _num(base, digits), _num(_ratio(app, base), 2) + "x", "", "")


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "missed")


def rows(r: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(what, app, baseline, app/baseline, target, verdict)."""
    out = []
    flat_a, flat_b = r["flat"]["app"], r["flat"]["baseline"]
    ratio = _ratio(flat_a["cpu_us_per_token"], flat_b["cpu_us_per_token"])
    label = f"server CPU per token, {flat_a['streams']} streams flat out (µs)"
    verdict = _verdict(None if ratio is None else ratio <= 1.25)
    out.append(
        (
            label,
            _num(flat_a["cpu_us_per_token"]),
            _num(flat_b["cpu_us_per_token"]),
            _num(ratio, 2) + "x",
            "≤ 1.25x",
            verdict,
        )
    )
    out.append(
        (
            "text events per token, flat out",
            _num(flat_a["events_per_token"], 3),
            _num(flat_b["events_per_token"], 3),
            "",
            "",
            "",
        )
    )
    out.append(
        _figures("tokens per second delivered, flat out", flat_a["tokens_per_s"], flat_b["tokens_per_s"])
    )

    held = r["paced"]["held"]
    ratio = _ratio(held["app"], held["baseline"]) if held["baseline"] else None
    top = r["paced"]["levels"][-1]["streams"]
    ceiling = {t: "≥ " if held[t] == top else "" for t in held}  # held at the highest level tried
    ratio_text = ("≤ " if ceiling["baseline"] and not ceiling["app"] else "") + _num(ratio, 2) + "x"
    out.append(
        (
            f"streams held at {r['paced']['rate']:g} tokens/s, p99 lateness < 50 ms",
            f"{ceiling['app']}{held['app']:,}",
            f"{ceiling['baseline']}{held['baseline']:,}",
            ratio_text,
            "≥ 0.8x",
            # A baseline that held the last level tried gives the ratio's ceiling only: below
            # 0.8x it is missed, at or above it not shown.
            _verdict(None if ratio is None or (ceiling["baseline"] and ratio >= 0.8) else ratio >= 0.8),
        )
    )
    # The levels are steps (2,000 then 2,500, ...), and a side at the edge of one holds it or
    # not by the noise of the run: where each would be at a full core, from its busy share at
    # the last level it held, reads between the steps (a figure, not the target).
    full = {t: _at_full_core(r["paced"]["levels"], t, held[t]) for t in held}
    out.append(
        _figures(
            "  streams at a full core, from the busy share at the last level held",
            full["app"],
            full["baseline"],
        )
    )
    both = [lv for lv in r["paced"]["levels"] if all((lv[t] or {}).get("held") for t in ("app", "baseline"))]
    if both:
        a, b = both[-1]["app"], both[-1]["baseline"]
        out.append(
            (
                f"server CPU per token at 20 tokens/s, {both[-1]['streams']:,} streams (µs)",
                _num(a["cpu_us_per_token"]),
                _num(b["cpu_us_per_token"]),
                _num(_ratio(a["cpu_us_per_token"], b["cpu_us_per_token"]), 2) + "x",
                "",
                "",
            )
        )
    for level in r["paced"]["levels"]:
        a, b = level.get("app"), level.get("baseline")
        out.append(
            (
                f"  p99 lateness at {level['streams']:,} streams (ms); server CPU busy",
                _paced_cell(a),
                _paced_cell(b),
                _num(_ratio(*(lv["p99_ms"] if lv and lv["all_streaming"] else None for lv in (a, b))), 2)
                + "x",
                "< 50 ms",
                "",
            )
        )

    idle_a, idle_b = r["idle"]["app"], r["idle"]["baseline"]
    out.append(
        (
            f"memory per idle open stream, {idle_a['streams']:,} streams opened once "
            f"{idle_a.get('first_streams', 0):,} are (KB)",
            _num(idle_a["kib_per_stream"]),
            _num(idle_b["kib_per_stream"]),
            _num(_ratio(idle_a["kib_per_stream"], idle_b["kib_per_stream"]), 2) + "x",
            "< 20 KB",
            _verdict(idle_a["kib_per_stream"] < 20),
        )
    )
    if "first_kib_per_stream" in idle_a and "first_kib_per_stream" in idle_b:
        out.append(
            _figures(
                f"  the first {idle_a['first_streams']:,}, the server's one-time growth included "
                "(KB per stream)",
                idle_a["first_kib_per_stream"],
                idle_b["first_kib_per_stream"],
                digits=1,
            )
        )
    peer = r["idle"].get("django")
    if peer is not None:  # the obvious Django view (bench/django_peer.py): the app's target
        out.append(
            (
                "  the obvious Django view (peer): memory per idle stream (KB); app / peer",
                _num(idle_a["kib_per_stream"]),
                _num(peer["kib_per_stream"]),
                _num(_ratio(idle_a["kib_per_stream"], peer["kib_per_stream"]), 2) + "x (peer)",
                "≤ peer",
                _verdict(idle_a["kib_per_stream"] <= peer["kib_per_stream"]),
            )
        )
    out.append(
        _figures(
            "idle CPU per stream, heartbeat every 1 s (µs/s)",
            idle_a["idle_cpu_us_per_stream_s"],
            idle_b["idle_cpu_us_per_stream_s"],
            digits=1,
        )
    )

    first_a, first_b = r["first"]["app"], r["first"]["baseline"]
    bg = first_a["background_streams"]
    out.append(
        (
            f"first `status` event, p50 / p99, {bg} streams running (ms)",
            f"{_num(first_a['status_p50_ms'])} / {_num(first_a['status_p99_ms'])}",
            f"{_num(first_b['status_p50_ms'])} / {_num(first_b['status_p99_ms'])}",
            _num(_ratio(first_a["status_p99_ms"], first_b["status_p99_ms"]), 2) + "x (p99)",
            "p99 < 5 ms",
            _verdict(first_a["status_p99_ms"] < 5),
        )
    )
    out.append(
        (
            f"first text, p50 / p99 (ms; token 0 is due at {first_a['first_token_due_ms']:g} ms)",
            f"{_num(first_a['text_p50_ms'])} / {_num(first_a['text_p99_ms'])}",
            f"{_num(first_b['text_p50_ms'])} / {_num(first_b['text_p99_ms'])}",
            _num(_ratio(first_a["text_p99_ms"], first_b["text_p99_ms"]), 2) + "x (p99)",
            "",
            "",
        )
    )

    if "burst" in r:
        out += burst_rows(r["burst"]["app"], r["burst"]["baseline"], r["burst"].get("django"))

    writes = r["writes"]
    out.append(
        (
            f"database writes per reply, flat out ({flat_a['tokens_per_stream']:,} tokens): mean (max)",
            f"{_num(writes['flat']['mean'], 2)} ({writes['flat']['max']})",
            "–",
            "",
            "bounded",
            "",
        )
    )
    out.append(
        (
            "database writes per reply, 20 tokens/s: mean (max), per second streamed",
            f"{_num(writes['paced']['mean'], 1)} ({writes['paced']['max']}), "
            f"{_num(writes['paced']['per_second'], 2)}/s",
            "–",
            "",
            "1 + 1/s + 1",
            "",
        )
    )
    for backend, measured in r.get("limits", {}).items():
        cpu = measured.get("cpu_us_per_send")
        out.append(
            (
                f"server CPU a limit check adds per send, {backend} backend (µs, in-process)",
                _num(cpu) if cpu is not None else f"not run: {measured.get('skipped', '?')}",
                "–",
                "",
                "< 300 µs",
                _verdict(None if cpu is None else cpu < 300),
            )
        )
    out.append(
        (
            "`database is locked` in the log + `error` events, whole run",
            str(r["locked"]["app"]),
            str(r["locked"]["baseline"]),
            "",
            "0",
            _verdict(r["locked"]["app"] == 0),
        )
    )
    out.append(
        (
            "load client CPU, busiest phase (% of its core)",
            f"{r['client_busy']['app'] * 100:.0f} %",
            f"{r['client_busy']['baseline'] * 100:.0f} %",
            "",
            "< 100 %",
            "",
        )
    )
    return out


def burst_rows(a: dict, b: dict, peer: dict | None = None) -> list[tuple[str, str, str, str, str, str]]:
    """4b. replies in a burst (issue 14)."""
    what = (
        f"{a['replies']:,} replies of {a['tokens_per_reply']} tokens at 20 tokens/s, "
        f"opened over {a['over_s']:g} s"
    )
    cpu = _ratio(a["cpu_us_per_token"], b["cpu_us_per_token"])
    first = _ratio(a["first_text_p99_ms"], b["first_text_p99_ms"])
    complete = a["complete"] == a["replies"]
    runs_a, runs_b = a.get("runs_cpu_us_per_token", []), b.get("runs_cpu_us_per_token", [])
    if len(runs_a) > 1:
        what += f"; the lower of {len(runs_a)} runs each, taken in turns"
    rows = [
        (
            f"replies in a burst: server CPU per token, the opening included (µs); {what}",
            _num(a["cpu_us_per_token"]),
            _num(b["cpu_us_per_token"]),
            _num(cpu, 2) + "x",
            "≤ 1.5x",
            _verdict(None if cpu is None else cpu <= 1.5 and complete),
        ),
        (
            "  first text after the request, p50 / p99 (ms; token 0 is due at 50 ms); replies complete",
            f"{_num(a['first_text_p50_ms'])} / {_num(a['first_text_p99_ms'])}; {a['complete']:,}",
            f"{_num(b['first_text_p50_ms'])} / {_num(b['first_text_p99_ms'])}; {b['complete']:,}",
            _num(first, 2) + "x (p99)",
            "≤ 2x",
            _verdict(None if first is None else first <= 2 and complete),
        ),
    ]
    if peer is not None:  # the obvious Django view (bench/django_peer.py), against the baseline
        rows.append(
            _figures(
                "  the obvious Django view (peer): CPU per token (µs), against the baseline",
                peer["cpu_us_per_token"],
                b["cpu_us_per_token"],
            )
        )
    if len(runs_a) > 1:
        rows.append(
            (
                "  each run's server CPU per token (µs), in the order run",
                ", ".join(map(_num, runs_a)),
                ", ".join(map(_num, runs_b)),
                "",
                "",
                "",
            )
        )
    return rows


def _at_full_core(levels: list[dict], target: str, held: int) -> float | None:
    """Streams the side would hold at 100 % of its core: the last level it held, divided by
    its server's busy share there."""
    level = next((lv[target] for lv in levels if lv["streams"] == held and lv.get(target)), None)
    if not held or level is None or not level.get("server_busy"):
        return None
    return held / level["server_busy"]


def _paced_cell(level: dict | None) -> str:
    if level is None:
        return "not run (behind)"
    if level.get("open_s") is None:
        return "✗ not all open and streaming in time"
    if not level["all_streaming"]:
        return f"✗ not all streaming ({_num(level['p99_ms'])})"
    mark = "" if level["held"] else " ✗"
    first = ""
    if "first_p99_ms" in level:  # the run before this one, which did not hold
        before = level["first_p99_ms"]
        first = f" (first run {'not all open in time' if before is None else _num(before)} ✗)"
    return f"{_num(level['p99_ms'])}{mark}{first}; {level['server_busy'] * 100:.0f} %"


def table(r: dict) -> str:
    m = r["machine"]
    head = (
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, uvicorn {m['uvicorn']} "
        f"(uvloop {m['uvloop']}, httptools {m['httptools']}), Django {m['django']}; "
        f"load average at start {m['loadavg_start'][0]:.2f}, at end {m['loadavg_end'][0]:.2f}; "
        f"{m['date']}; mode `{r['mode']}`, {r['duration_s']:.0f} s.\n"
        "Server pinned to CPU 0 (`taskset -c 0`), load client to CPU 1; same uvicorn options for both.\n\n"
    )
    lines = [
        "| what | app | baseline | app/baseline | target | verdict |",
        "| --- | --: | --: | --: | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(r)]
    return head + "\n".join(lines) + "\n" + followed_table(r.get("followed"))


def followed_table(f: dict | None) -> str:
    """5. replies followed from another process (bench/followed.py)."""
    if not f:
        return "\nReplies followed from another process: not run (no redis-server on this machine).\n"
    mem, red = f["memory"], f["redis"]
    ratio = _ratio(red["cpu_us_per_token"], mem["cpu_us_per_token"])
    late_ok = red["all_streaming"] and red["p99_ms"] < 50
    lines = [
        "",
        f"Replies followed from another process: {f['streams']:,} streams at {f['rate']:g} tokens/s, "
        "each reply created on one server and its stream read from another (Redis: two uvicorn "
        "processes and a redis-server, all on CPU 0); in-process: one server does both.",
        "",
        "| what | in-process log | Redis, another process | Redis/in-process | target | verdict |",
        "| --- | --: | --: | --: | --- | --- |",
        f"| app CPU per token (µs) | {_num(mem['cpu_us_per_token'])} | {_num(red['cpu_us_per_token'])} "
        f"| {_num(ratio, 2)}x | ≤ 1.3x | {_verdict(None if ratio is None else ratio <= 1.3)} |",
        f"| redis-server CPU per token (µs) | – | {_num(red['redis_cpu_us_per_token'])} |  |  |  |",
        f"| p50 / p99 lateness (ms) | {_num(mem['p50_ms'])} / {_num(mem['p99_ms'])} "
        f"| {_num(red['p50_ms'])} / {_num(red['p99_ms'])} |  | p99 < 50 ms | {_verdict(late_ok)} |",
        f"| text events per token | {_num(mem['events_per_token'], 2)} | {_num(red['events_per_token'], 2)} "
        "|  |  |  |",
    ]
    return "\n".join(lines) + "\n"


def _finite(value):
    """JSON has no infinity: a level where nothing arrived in time is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write(r: dict, directory: Path = RESULTS) -> Path:
    r = _finite(r)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    path = directory / "latest.md"
    path.write_text(table(r))
    return path


if __name__ == "__main__":  # re-render a saved run: python -m bench.report [results.json]
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "latest.json"
    print(table(json.loads(source.read_text())))
