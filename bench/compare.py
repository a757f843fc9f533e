"""Two servers of one run side by side: each figure's median over repeated, alternated runs.

``bench/run.py --servers A,B --repeat 3 --compare A,B`` runs A and B in turns
(A B, B A, A B, ...) for each scenario, then this report says, figure by
figure, how far B's median is from A's, and how far A's own runs spread:
on a shared machine a change smaller than that spread is noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One number of a run that a comparison looks at."""

    label: str
    read: Callable[[dict], float | None]
    higher_is_better: bool
    modes: frozenset[str]  # the scenario modes where the figure means something


def _client(key: str) -> Callable[[dict], float | None]:
    return lambda row: (row.get("client") or {}).get(key)


def _server(key: str) -> Callable[[dict], float | None]:
    return lambda row: (row.get("metrics") or {}).get(key)


def _p99(row: dict) -> float | None:
    return ((row.get("client") or {}).get("latency_ms") or {}).get("p99")


LOADED = frozenset({"saturation", "rate"})
FIGURES = [
    Figure("delivered/s", _client("delivered_per_s"), True, LOADED),
    Figure("p99 ms", _p99, False, LOADED),
    # At saturation the server's CPU is pegged whatever it costs: CPU counts at a fixed rate.
    Figure("server CPU s", _server("server_cpu_s"), False, frozenset({"rate", "idle"})),
    Figure("handshakes/s", _client("handshakes_per_s"), True, frozenset({"idle"})),
    Figure("KB/idle conn", _server("kb_per_connection"), False, frozenset({"idle"})),
]


def _values(rows: list[dict], server: str, scenario: str, figure: Figure) -> list[float]:
    found = (figure.read(r) for r in rows if r["server"] == server and r["scenario"] == scenario)
    return [v for v in found if v is not None]


def _cell(values: list[float]) -> str:
    digits = 1 if max(values) < 1000 else 0
    runs = " / ".join(f"{v:,.{digits}f}" for v in values)
    return f"{runs} (median {statistics.median(values):,.{digits}f})" if len(values) > 1 else runs


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    return f"{(max(values) - min(values)) / statistics.median(values):.1%}"


def worse_by(before: float, after: float, higher_is_better: bool) -> float:
    """Return how much worse ``after`` is than ``before`` as a fraction (negative: better)."""
    if not before:
        return 0.0
    change = (after - before) / before
    return -change if higher_is_better else change


def comparison(rows: list[dict], scenarios: list, baseline: str, candidate: str) -> str:
    """Return the Markdown comparison of ``candidate`` against ``baseline`` in ``rows``."""
    lines = [
        f"### `{candidate}` against `{baseline}` (medians of alternated runs)",
        "",
        f"| scenario | figure | `{baseline}` | `{candidate}` | worse by | spread of `{baseline}` |",
        "|---|---|---|---|---|---|",
    ]
    worst = None
    for scenario in scenarios:
        for figure in FIGURES:
            if scenario.mode not in figure.modes:
                continue
            before = _values(rows, baseline, scenario.name, figure)
            after = _values(rows, candidate, scenario.name, figure)
            if not before or not after:
                continue
            worse = worse_by(statistics.median(before), statistics.median(after), figure.higher_is_better)
            if worst is None or worse > worst[0]:
                worst = (worse, figure.label, scenario.name)
            lines.append(
                f"| {scenario.name} | {figure.label} | {_cell(before)} | {_cell(after)} "
                f"| {worse:+.1%} | {_spread(before)} |"
            )
    if worst is not None:
        lines += ["", f"Largest regression: {worst[0]:+.1%} ({worst[1]}, {worst[2]}); negative is better."]
    return "\n".join(lines) + "\n"
