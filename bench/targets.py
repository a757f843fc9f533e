"""The goal figures against the bare server of the same run, and what happened past capacity.

bench/run.py prints this after its table. Each target is the project under
`make serve` (``realtime-uvicorn``) measured against ``bare`` in the same
run; with ``--repeat`` each side is its median over the runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

PROJECT = "realtime-uvicorn"
BARE = "bare"


Read = Callable[[dict], float | None]


def _median(rows: list[dict], server: str, scenario: str, read: Read) -> float | None:
    picked = (read(r) for r in rows if r["server"] == server and r["scenario"] == scenario)
    values = [v for v in picked if v is not None]
    return statistics.median(values) if values else None


def _client(key: str) -> Read:
    return lambda row: (row.get("client") or {}).get(key)


def _p99(row: dict) -> float | None:
    return ((row.get("client") or {}).get("latency_ms") or {}).get("p99")


def _kb(row: dict) -> float | None:
    return (row.get("metrics") or {}).get("kb_per_connection")


def _ratio_target(rows, label, scenario, read, unit, goal, at_most=False) -> list[str] | None:
    """Return the cells of a "project / bare" target, or None when either side is missing."""
    ours, bare = _median(rows, PROJECT, scenario, read), _median(rows, BARE, scenario, read)
    if ours is None or not bare:
        return None
    ratio = ours / bare
    met = ratio <= goal if at_most else ratio >= goal
    sign = "≤" if at_most else "≥"
    if unit == "KB":
        figures = f"{ours:,.1f} KB against {bare:,.1f} KB"
    else:
        figures = f"{ours:,.0f}/s against {bare:,.0f}/s"
    return [label, f"{sign} {goal:g}× bare", f"{ratio:.2f}× ({figures})", "met" if met else "missed"]


def _lossless(rows: list[dict], scenario: str) -> list[str] | None:
    ours = _median(rows, PROJECT, scenario, _client("loss_pct"))
    bare = _median(rows, BARE, scenario, _client("loss_pct"))
    if ours is None:
        return None
    p99 = _median(rows, PROJECT, scenario, _p99)
    value = f"{ours:.2f} % lost (bare {'-' if bare is None else f'{bare:.2f} %'}), p99 {p99 or 0:,.0f} ms"
    # When the bare server lost too, the machine set the limit, not the project.
    verdict = "not judged: bare lost too" if bare else "met" if ours == 0 else "missed"
    return [scenario, "lossless where bare is", value, verdict]


def target_table(rows: list[dict]) -> str:
    """Return the Markdown block of the four targets (only those this run measured)."""
    found = [
        _ratio_target(rows, "saturation-100", "saturation-100", _client("delivered_per_s"), "/s", 0.7),
        _lossless(rows, "rate-5000"),
        _ratio_target(rows, "authenticated handshakes", "idle-10000", _client("handshakes_per_s"), "/s", 0.5),
        _ratio_target(rows, "memory per idle connection", "idle-10000", _kb, "KB", 1.5, at_most=True),
    ]
    found = [f for f in found if f]
    if not found:
        return ""
    lines = [f"Targets ({PROJECT} against {BARE}, this run):", ""]
    lines += ["| target | goal | measured | |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in found]
    return "\n".join(lines) + "\n"


def overload_table(rows: list[dict], scenarios: set[str]) -> str:
    """Return the Markdown block of the past-capacity runs: what was delivered, lost, shed and resumed."""
    picked = [r for r in rows if r["scenario"] in scenarios and r.get("client")]
    if not picked:
        return ""
    lines = [
        "Past capacity (lost: never delivered by the end of the drain, replays after a 1013"
        " counted as delivered; backlog: deliveries owed when sending stopped):",
        "",
        "| server | scenario | offered/s | delivered | lost | closed 1013 | resumed | delivered by replay |"
        " backlog at send end | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in picked:
        c = row["client"]
        latency = c.get("latency_ms") or {}
        cells = [
            row["server"] + (f" ({row['run']})" if row.get("run") else ""),
            row["scenario"],
            f"{c.get('offered_per_s') or 0:,.0f}",
            f"{c.get('delivered', 0):,}",
            f"{c.get('lost', 0):,}",
            f"{c.get('closed_1013', 0):,}",
            f"{c.get('resumed', 0):,}",
            f"{c.get('delivered_by_replay', 0):,}",
            f"{c.get('backlog_at_send_end', 0):,}",
            f"{latency.get('p50') or 0:,.0f}",
            f"{latency.get('p99') or 0:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
