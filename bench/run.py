"""Fan-out benchmark: every server under test, every scenario, one Markdown table.

    .venv/bin/python bench/run.py            # the full table (several minutes)
    .venv/bin/python bench/run.py --quick    # a tiny version of every run (< 1 min)

See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster  # noqa: E402
import compare  # noqa: E402
import profiles  # noqa: E402
import servers  # noqa: E402
import targets  # noqa: E402
from servers import BENCH, KINDS, ROOT, Kind, Server  # noqa: E402
from sessions import USERNAME_PREFIX, login_via_form  # noqa: E402

CLIENT_DIR = BENCH / "client"
RESULTS = BENCH / "results"
ROOM = "bench"
DEFAULT_SERVERS = [
    "bare",
    "uvicorn-asgi",
    "tutorial",
    "realtime-daphne",
    "realtime-uvicorn",
    "redis-2proc",
    "redis-4proc",
    "pg-2proc",
    "pg-4proc",
]


@dataclass(frozen=True)
class Scenario:
    """One load shape."""

    name: str
    clients: int
    mode: str  # rate | saturation | idle
    senders: int = 10
    rate: float = 10.0
    duration: float = 10.0
    settle: float = 2.0
    window: int = 4
    drain: float = 5.0
    connect_timeout: float = 180.0
    # When set, the default run (no --scenarios) measures only these servers: a long run
    # whose other rows would add minutes to make bench and little news.
    servers: tuple[str, ...] = ()

    def describe(self) -> str:
        """Return a short human description."""
        if self.mode == "idle":
            return f"{self.clients} idle"
        if self.mode == "saturation":
            return f"{self.clients} clients, {self.senders} senders, saturation, {self.duration:g} s"
        return f"{self.clients} clients, {self.rate:g} msg/s, {self.duration:g} s"

    def hard_limit(self) -> float:
        """Return the wall-clock seconds after which the run is killed."""
        return self.connect_timeout + self.settle + self.duration + self.drain + 60


SCENARIOS = [
    Scenario("saturation-100", 100, "saturation", duration=10),
    Scenario("rate-1000", 1000, "rate", duration=15),
    Scenario("rate-5000", 5000, "rate", duration=15),
    # Past capacity: 1.5x rate-5000's 50,000 deliveries/s, on the same 5,000 connections
    # (bench/README.md, Past capacity, says why this shape).
    Scenario("overload-5000", 5000, "rate", rate=15.0, duration=15, servers=("bare", "realtime-uvicorn")),
    Scenario("idle-10000", 10000, "idle", settle=5, connect_timeout=240),
]
# Runs whose rows also go to the past-capacity block.
OVERLOAD = {"overload-5000"}
_QUICK = {"clients": 50, "duration": 1.5, "drain": 1, "connect_timeout": 20, "settle": 0.3}
QUICK = {s.name: _QUICK for s in SCENARIOS}
# A server "collapses" when a run of this size or more loses this much or
# times out; its larger scenarios are then skipped instead of hanging.
COLLAPSE_MIN_CLIENTS = 1000
COLLAPSE_LOSS_PCT = 50.0


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE to its hard limit (inherited by servers and client); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def ensure_client() -> None:
    """Install the Node client's locked dependencies unless they are there."""
    if not (CLIENT_DIR / "node_modules" / "ws" / "package.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(CLIENT_DIR)], check=True)


def collectstatic() -> None:
    """Collect static files: with DEBUG off the login page needs WhiteNoise's manifest."""
    kind = KINDS["realtime-daphne"]
    servers.run_django(kind, None, "collectstatic", "--noinput", "-v0")


def source_addresses(clients: int) -> list[str]:
    """Return source IPs to spread the clients over when one IP has too few ports."""
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    per_ip = (high - low) // 2  # leave room for TIME_WAIT sockets of earlier runs
    if clients <= per_ip:
        return []  # the kernel picks per destination; no bind() needed
    return [f"127.0.0.{i + 1}" for i in range(-(-clients // per_ip))]


def run_client(server: Server, scenario: Scenario, sessions: list[str], workdir: Path, window: int) -> dict:
    """Run the Node client against ``server``; return its result plus server metrics."""
    config = {
        # Client i talks to process i mod N (its Origin names that process).
        "urls": [f"ws://127.0.0.1:{port}/ws/rooms/{ROOM}/" for port in server.ports],
        "clients": scenario.clients,
        "senders": scenario.senders,
        "mode": scenario.mode,
        "rate": scenario.rate,
        "window": window,
        "duration": scenario.duration,
        "drain": scenario.drain,
        "settle": scenario.settle,
        "connectTimeout": scenario.connect_timeout,
        "localAddresses": source_addresses(scenario.clients),
        "waitForRunner": True,
        "sessions": sessions,
        "deflate": server.kind.deflate,
    }
    config_path = workdir / f"{server.kind.name}.{scenario.name}.client.json"
    config_path.write_text(json.dumps(config))
    metrics: dict = {"rss_before_kb": server.rss_kb()}
    cpu_start = server.cpu()
    redis_cpu_start = server.redis_cpu() if isinstance(server, cluster.Cluster) else None
    db_cpu_start = server.database_cpu() if isinstance(server, cluster.Cluster) else None
    busy_start, runner_start = servers.machine_busy_seconds(), time.process_time()
    marks: dict[str, float] = {}
    started = time.monotonic()
    with open(workdir / f"{server.kind.name}.{scenario.name}.client.log", "wb") as log:
        client = subprocess.Popen(
            ["node", str(CLIENT_DIR / "loadclient.mjs"), str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        # The hard limit: whatever the server does, the run ends.
        timer = threading.Timer(scenario.hard_limit(), client.kill)
        timer.start()
        result = None
        try:
            for line in client.stdout:
                message = json.loads(line)
                if "result" in message:
                    result = message["result"]
                    continue
                phase = message["phase"]
                marks[phase] = server.cpu()
                marks[phase + "_t"] = time.monotonic()
                if phase == "settled":
                    metrics["rss_settled_kb"] = server.rss_kb()
                    client.stdin.write("continue\n")
                    client.stdin.flush()
            client.wait(timeout=30)
        finally:
            timer.cancel()
            if client.poll() is None:
                client.kill()
    metrics["timed_out"] = result is None and time.monotonic() - started >= scenario.hard_limit() - 1
    metrics["server_cpu_s"] = server.cpu() - cpu_start
    if redis_cpu_start is not None:
        metrics["redis_cpu_s"] = server.redis_cpu() - redis_cpu_start
    if db_cpu_start is not None:
        metrics["db_cpu_s"] = server.database_cpu() - db_cpu_start
    # Whatever else ran on the machine meanwhile (other jobs) skews the numbers: say how much.
    busy = servers.machine_busy_seconds() - busy_start - (time.process_time() - runner_start)
    other = (
        busy - metrics["server_cpu_s"] - (metrics.get("redis_cpu_s") or 0) - (metrics.get("db_cpu_s") or 0)
    )
    other -= (result or {}).get("client_cpu_s") or 0
    metrics["other_load_cores"] = max(0.0, other) / (time.monotonic() - started)
    if "send_start" in marks and "send_done" in marks:
        seconds = marks["send_done_t"] - marks["send_start_t"]
        metrics["server_cpu_send_pct"] = 100 * (marks["send_done"] - marks["send_start"]) / seconds
    metrics["peak_rss_kb"] = server.peak_rss_kb()
    if result and result.get("receivers") and "rss_settled_kb" in metrics:
        grown = metrics["rss_settled_kb"] - metrics["rss_before_kb"]
        metrics["kb_per_connection"] = grown / result["receivers"]
    return {"client": result, "metrics": metrics}


def run_one(
    kind: Kind, scenario: Scenario, template, sessions, workdir: Path, window: int, profile: str | None
) -> dict:
    """Start a fresh ``kind`` server, run ``scenario`` against it, stop it; return the row."""
    row = {"server": kind.name, "scenario": scenario.name, "clients": scenario.clients}
    label = f"{kind.name}.{scenario.name}"
    if kind.processes:
        db_name = f"{template}_{kind.processes}p_{scenario.name.replace('-', '_')}"
        db = cluster.create_database(db_name, template=template)
        server = cluster.Cluster(kind, db, workdir, label)
    else:
        db = servers.copy_database(template, workdir / f"{label}.sqlite3") if template else None
        server = Server(kind, db, workdir / f"{label}.server.log")
    keys = [s["session"] for s in sessions[: scenario.clients]] if sessions else []
    profiler = None
    try:
        server.start()
        if kind.django == "project.settings":
            row["channel_layer"] = httpx.get(f"{server.url}/healthz", timeout=10).json().get("channel_layer")
        if kind.login_form and keys:
            # Prove the real login path: client 0 holds a session from the form.
            keys[0] = login_via_form(server.url, sessions[0]["username"])
            row["login_form"] = "ok"
        if profile:
            profiler = start_profiler(server, scenario, workdir, profile == "gil")
        row.update(run_client(server, scenario, keys, workdir, window))
    except Exception as exc:  # a broken run is a row with an error, not a dead table
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if profiler:
            stop_profiler(profiler, row)
        server.stop()
    if kind.processes:
        row["stored_messages"] = cluster.stored_messages(db)
        cluster.drop_database(db_name)
    elif db:
        row["stored_messages"] = servers.stored_messages(db)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return row


def start_profiler(
    server: Server, scenario: Scenario, workdir: Path, gil: bool
) -> tuple[subprocess.Popen, Path]:
    """Start py-spy on the server for the length of the run (bench/requirements.txt)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy:
        raise RuntimeError("--profile needs py-spy: pip install -r bench/requirements.txt")
    out = workdir / f"{server.kind.name}.{scenario.name}.pyspy.txt"  # a cluster's first process
    seconds = int(scenario.connect_timeout + scenario.duration + scenario.drain)
    command = [spy, "record", "--pid", str(server.process.pid), "--format", "raw", "--rate", "200"]
    if gil:
        # Only samples of the thread holding the GIL: the one core all Python code shares.
        command.append("--gil")
    command += ["--duration", str(seconds), "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT), out


def stop_profiler(profiler: tuple[subprocess.Popen, Path], row: dict) -> None:
    """Stop py-spy (it writes its output on SIGINT) and note where the profile is."""
    process, out = profiler
    process.send_signal(2)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    row["profile"] = str(out)
    if out.exists():
        summary = out.with_suffix(".summary.txt")
        try:
            summary.write_text(profiles.summarize(out))
            row["profile_summary"] = str(summary)
        except (OSError, ValueError) as exc:  # a profile is a bonus; never lose the run for it
            row["profile_error"] = str(exc)


def collapsed(row: dict) -> bool:
    """Return whether a run shows the server collapsing (so larger runs are skipped)."""
    if row["clients"] < COLLAPSE_MIN_CLIENTS:
        return False
    client = row.get("client")
    if row.get("error") or not client or row.get("metrics", {}).get("timed_out"):
        return True
    if client["handshakes_failed"] > client["clients"] / 2:
        return True
    return (client.get("loss_pct") or 0) >= COLLAPSE_LOSS_PCT


# -- output -----------------------------------------------------------------------


def fmt(value, digits: int = 0) -> str:
    """Format a number for the table ("-" for none)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


HEADER = [
    "server", "scenario", "offered/s", "delivered/s", "vs bare", "loss %",
    "p50 ms", "p90 ms", "p99 ms", "max ms", "handshakes/s", "failed hs", "errors",
    "srv CPU s", "srv CPU % (send)", "peak RSS MB", "KB/idle conn", "client CPU s", "notes",
]  # fmt: skip


def table_row(row: dict, bare_rate: float | None) -> list[str]:
    """Return the Markdown cells of one result row."""
    client, server = row.get("client") or {}, row.get("metrics") or {}
    latency = client.get("latency_ms") or {}
    delivered = client.get("delivered_per_s")
    ratio = f"{delivered / bare_rate:.0%}" if delivered is not None and bare_rate else "-"
    notes = [f"run {row['run']}"] if row.get("run") else []
    if row.get("skipped"):
        notes.append(row["skipped"])
    if row.get("error"):
        notes.append(row["error"])
    if server.get("timed_out"):
        notes.append("hit the hard time limit")
    if (server.get("other_load_cores") or 0) >= 0.1:
        notes.append(f"other load {server['other_load_cores']:.1f} cores")
    if client.get("messages_sent") and row.get("stored_messages") is not None:
        accepted = client["messages_sent"] - client["messages_rejected"]
        if row["stored_messages"] != accepted:
            notes.append(f"stored {row['stored_messages']:,} of {accepted:,} sent")
    if server.get("redis_cpu_s") is not None:
        notes.append(f"Redis CPU {server['redis_cpu_s']:.1f} s")
    if server.get("db_cpu_s") is not None:
        notes.append(f"PostgreSQL CPU {server['db_cpu_s']:.1f} s")
    if client.get("closed_1013"):
        notes.append(f"{client['closed_1013']:,} closed 1013, {client.get('resumed', 0):,} resumed")
    if client.get("closed_after_open", 0) > client.get("closed_1013", 0):
        notes.append(f"{client['closed_after_open'] - client.get('closed_1013', 0)} closed by server")
    if client.get("handshakes_not_attempted"):
        notes.append(f"{client['handshakes_not_attempted']:,} not attempted (connect time limit)")
    if client.get("handshake_failures"):
        notes.append("failed: " + ", ".join(f"{k} x{v}" for k, v in client["handshake_failures"].items()))
    if client.get("duplicates_or_reordered"):
        notes.append(f"{client['duplicates_or_reordered']} dup/reordered")
    if client.get("receivers") is not None and client["receivers"] < client["clients"]:
        notes.append(f"{client['receivers']}/{client['clients']} got hello")
    errors = sum((client.get("errors_by_code") or {}).values()) if client else None
    peak = server.get("peak_rss_kb")
    return [
        row["server"],
        row["scenario"],
        fmt(client.get("offered_per_s")),
        fmt(delivered),
        ratio,
        fmt(client.get("loss_pct"), 2),
        fmt(latency.get("p50"), 1),
        fmt(latency.get("p90"), 1),
        fmt(latency.get("p99"), 1),
        fmt(latency.get("max"), 1),
        fmt(client.get("handshakes_per_s")),
        fmt(client.get("handshakes_failed")),
        fmt(errors),
        fmt(server.get("server_cpu_s"), 1),
        fmt(server.get("server_cpu_send_pct")),
        fmt(peak / 1024, 1) if peak else "-",
        fmt(server.get("kb_per_connection"), 1),
        fmt(client.get("client_cpu_s"), 1),
        "; ".join(notes),
    ]


def markdown(rows: list[dict], scenarios: list[Scenario], command: str, started: float) -> str:
    """Return the whole report: the table, the scenarios, the machine, the command."""
    bare = {
        r["scenario"]: r["client"]["delivered_per_s"]
        for r in rows
        if r["server"] == "bare" and r.get("client") and r["client"].get("delivered_per_s")
    }
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        cells = table_row(row, bare.get(row["scenario"]))
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    for block in (targets.target_table(rows), targets.overload_table(rows, OVERLOAD)):
        if block:
            lines += ["", block.rstrip("\n")]
    lines += ["", "Scenarios:"]
    lines += [f"- `{s.name}`: {s.describe()}" for s in scenarios]
    lines += ["", "Servers:"]
    lines += [f"- `{name}`: {KINDS[name].description}" for name in dict.fromkeys(r["server"] for r in rows)]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    layers = sorted({r["channel_layer"] for r in rows if r.get("channel_layer")})
    lines += [
        "",
        f"Project: `{app_version()}`" + (f", channel layer `{'`, `'.join(layers)}`" if layers else "") + ".",
        f"Machine: {os.cpu_count()} CPUs (nproc), {platform.platform()}, Python {platform.python_version()}, "
        f"Node {node}; total {time.monotonic() - started:.0f} s.",
        "",
        f"Reproduce: `{command}`",
    ]
    return "\n".join(lines) + "\n"


def app_version() -> str:
    """Return the project's git commit, marked dirty when it has uncommitted changes."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() or "unknown (no git)"
    except OSError:
        return "unknown (no git)"


# -- main -------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny version of every run (smoke check)")
    parser.add_argument(
        "--servers", default=",".join(DEFAULT_SERVERS), help=f"comma list of {', '.join(KINDS)}"
    )
    parser.add_argument(
        "--scenarios",
        help=f"comma list of {', '.join(s.name for s in SCENARIOS)} (default: all; "
        "then overload-5000 runs only for bare and realtime-uvicorn)",
    )
    parser.add_argument("--clients", type=int, help="override the number of clients of every scenario")
    parser.add_argument("--duration", type=float, help="override the seconds of sending")
    parser.add_argument("--rate", type=float, help="override the offered rate of rate scenarios (msg/s)")
    parser.add_argument("--window", type=int, default=4, help="saturation: unanswered messages per sender")
    parser.add_argument("--profile", help="comma list of server:scenario to record with py-spy")
    parser.add_argument(
        "--profile-mode",
        choices=["gil", "all"],
        default="gil",
        help="gil: samples of the thread holding the GIL (CPU of Python code, the default); "
        "all: every non-idle thread (also time in C code that released the GIL, and GIL waits)",
    )
    parser.add_argument("--no-skip", action="store_true", help="run larger scenarios after a collapse too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.md")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each scenario this many times, the servers in turns"
    )
    parser.add_argument(
        "--compare",
        help="A,B: after the table, B's medians against A's, figure by figure (bench/compare.py)",
    )
    args = parser.parse_args()
    if args.compare:
        pair = args.compare.split(",")
        if len(pair) != 2 or not set(pair) <= set(args.servers.split(",")):
            parser.error("--compare takes two of the --servers, as A,B")
    return args


def select_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Return the scenarios asked for, with --quick and the overrides applied."""
    by_name = {s.name: s for s in SCENARIOS}
    chosen = []
    for name in (args.scenarios or ",".join(by_name)).split(","):
        if name not in by_name:
            raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(by_name)}")
        scenario = by_name[name]
        if args.quick:
            scenario = replace(scenario, **QUICK[name])
        if args.scenarios:  # named: every server asked for runs it
            scenario = replace(scenario, servers=())
        overrides = {"clients": args.clients, "duration": args.duration}
        if scenario.mode == "rate":
            overrides["rate"] = args.rate
        chosen.append(replace(scenario, **{k: v for k, v in overrides.items() if v is not None}))
    return chosen


def main() -> None:
    """Run every (server, scenario) pair and print the table."""
    args = parse_args()
    started = time.monotonic()
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "bench/run.py", *sys.argv[1:]])
    kinds = [KINDS[name] for name in args.servers.split(",")]
    scenarios = select_scenarios(args)
    profile = set((args.profile or "").split(",")) - {""}
    nofile = raise_fd_limit()
    if max(s.clients for s in scenarios) + 200 > nofile:
        raise SystemExit(
            f"the open-file limit is {nofile}; too low for {max(s.clients for s in scenarios)} clients"
        )
    ensure_client()
    RESULTS.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="work-", dir=RESULTS))
    print(f"work directory (logs): {workdir}", file=sys.stderr)
    if any(k.login_form for k in kinds):
        collectstatic()
    users = max(s.clients for s in scenarios)
    # (settings module, shares services) -> (template database, sessions)
    templates: dict[tuple[str, bool], tuple] = {}
    for kind in kinds:
        key = (kind.django, bool(kind.processes))
        if kind.django and key not in templates:
            t0 = time.monotonic()
            prepare = cluster.prepare_template if kind.processes else servers.prepare_database
            templates[key] = prepare(kind, workdir, users)
            seconds = time.monotonic() - t0
            where = "PostgreSQL" if kind.processes else "SQLite"
            print(
                f"{kind.django} ({where}): migrated, {users} {USERNAME_PREFIX} sessions in {seconds:.1f} s",
                file=sys.stderr,
            )
    rows, collapsed_at = [], {}
    for scenario in scenarios:
        for run in range(args.repeat):
            # Alternate the order (A B, B A, ...) so a drift of the machine favours neither.
            for kind in kinds if run % 2 == 0 else kinds[::-1]:
                if scenario.servers and kind.name not in scenario.servers:
                    continue
                if kind.name in collapsed_at and not args.no_skip:
                    if run == 0:
                        skipped = f"skipped: collapsed at {collapsed_at[kind.name]}"
                        rows.append(
                            {"server": kind.name, "scenario": scenario.name, "clients": scenario.clients,
                             "skipped": skipped}
                        )  # fmt: skip
                    continue
                print(f"== {kind.name} / {scenario.name}: {scenario.describe()}", file=sys.stderr, flush=True)
                template, sessions = templates.get((kind.django, bool(kind.processes)), (None, None))
                wanted = args.profile_mode if f"{kind.name}:{scenario.name}" in profile else None
                row = run_one(kind, scenario, template, sessions, workdir, args.window, wanted)
                if args.repeat > 1:
                    row["run"] = f"{run + 1}/{args.repeat}"
                rows.append(row)
                summary = table_row(row, None)
                print(
                    "   " + " | ".join(f"{h}={c}" for h, c in zip(HEADER, summary, strict=True)),
                    file=sys.stderr,
                )
                if kind.baseline and collapsed(row):
                    collapsed_at[kind.name] = scenario.name
    report = markdown(rows, scenarios, command, started)
    if args.compare:
        report += "\n" + compare.comparison(rows, scenarios, *args.compare.split(","))
    print(report)
    for row in rows:
        if row.get("profile_summary"):
            print(Path(row["profile_summary"]).read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    if not args.keep:
        for path in workdir.glob("*.sqlite3*"):
            path.unlink()
    for (_, shared), (template, _) in templates.items():
        if shared:
            cluster.drop_database(template)
    print(f"written: {args.out} and {args.out.with_suffix('.json')}; logs in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
