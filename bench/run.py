"""Benchmark driver: gaio (each engine) and asyncio/uvloop echo servers under bench/loadgen.

    python bench/run.py                       # quick profile (default of `make bench`)
    python bench/run.py --full                # long windows (also: FULL=1)
    python bench/run.py --servers gaio-epoll,uvloop --scenarios conc100,pingpong
    python bench/run.py --list                # what can run here

For every (server, scenario) pair it runs N repetitions; each repetition starts a
fresh server process (pinned to one core), waits for its "READY <port>" line, runs
the C load generator (pinned to the other core), then SIGTERMs the server and
makes sure nothing of it is left.  Reports medians with min-max, writes
bench/results/<YYYY-MM-DD>.json (-2, -3... for later runs that day) and a PNG chart
next to it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOADGEN_SRC = os.path.join(HERE, "loadgen.c")
LOADGEN = os.path.join(HERE, "loadgen")

SCENARIOS = {
    # name: loadgen parameters, and one line on what it shows
    "pingpong": dict(conns=1, size=128, depth=1, doc="1 conn, 128 B, depth 1: per-message latency and overhead"),
    "conc100": dict(conns=100, size=1024, depth=1, doc="100 conns, 1 KiB, depth 1: batching under moderate fan-in"),
    "c5k": dict(conns=5000, size=128, depth=1, doc="5000 conns, 128 B, depth 1: many active connections"),
    "stream": dict(conns=8, size=65536, depth=4, doc="8 conns, 64 KiB, depth 4: bulk throughput"),
    "idle": dict(conns=5000, idle=True, doc="5000 idle conns, each with a pending read: server RSS per conn"),
}

PROFILES = {
    "quick": dict(reps=3, warmup=0.5, duration=1.0),
    "full": dict(reps=5, warmup=2.0, duration=10.0),
}

PEERS = {
    "asyncio-protocol": "peers/asyncio_protocol.py",
    "asyncio-streams": "peers/asyncio_streams.py",
    "uvloop": "peers/uvloop_protocol.py",
}

# Servers that run only some scenarios (filled by all_servers): gaio's best
# engine again in the bulk scenario, configured as the README advises for a few
# fat streams. uvloop reads 256 KiB at a time; a gaio swap read moves at most
# bufsize (64 KiB by default), and the echo copies it out of the swap buffer.
# "-256k": a 256 KiB swap buffer; "-own256k": each connection reads into a
# 256 KiB buffer of its own and writes back from it (no copy).
ONLY_IN: dict[str, set[str]] = {}
BULK_BUFSIZE = 256 * 1024

READY_TIMEOUT = 30.0  # seconds for a server to print READY
STOP_TIMEOUT = 5.0  # seconds for a server to exit after SIGTERM


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- discovery


def gaio_engines() -> tuple[list[str], str | None]:
    """Engines gaio can run here, or ([], reason)."""
    try:
        import gaio  # noqa: F401
    except ImportError:
        sys.path.insert(0, ROOT)
    try:
        import gaio

        if not hasattr(gaio, "Watcher"):
            return [], "gaio.Watcher does not exist yet"
        return list(gaio.available_backends()), None
    except Exception as exc:  # noqa: BLE001 - report, do not crash the run
        return [], f"cannot import gaio: {exc!r}"


def all_servers() -> tuple[dict[str, list[str]], list[str]]:
    """{name: argv without --port}, and notices about what was skipped."""
    servers: dict[str, list[str]] = {}
    notices = []
    engines, why = gaio_engines()
    if why:
        notices.append(f"skipping gaio servers: {why}")
    for engine in engines:
        servers[f"gaio-{engine}"] = [sys.executable, os.path.join(HERE, "echo_server.py"), "--backend", engine]
    if engines:
        best = servers[f"gaio-{engines[0]}"]
        kib = BULK_BUFSIZE >> 10
        for name, extra in ((f"gaio-{engines[0]}-{kib}k", ["--bufsize", str(BULK_BUFSIZE)]),
                            (f"gaio-{engines[0]}-own{kib}k", ["--own-buffers", str(BULK_BUFSIZE)])):
            servers[name] = best + extra
            ONLY_IN[name] = {"stream"}
    for name, script in PEERS.items():
        if name == "uvloop" and importlib.util.find_spec("uvloop") is None:
            notices.append("skipping uvloop: cannot import uvloop (pip install uvloop, or the bench extra)")
            continue
        servers[name] = [sys.executable, os.path.join(HERE, script)]
    return servers, notices


def build_loadgen() -> None:
    """Compile loadgen.c if the binary is missing or stale (make bench does it too)."""
    if os.path.exists(LOADGEN) and os.path.getmtime(LOADGEN) >= os.path.getmtime(LOADGEN_SRC):
        return
    cc = os.environ.get("CC", "cc")
    log(f"building {LOADGEN} with {cc} -O2")
    subprocess.run([cc, "-O2", "-o", LOADGEN, LOADGEN_SRC], check=True, timeout=120)


def pick_cpus() -> tuple[int | None, int | None]:
    """(client cpu, server cpu): two distinct cores we may use, else (None, None)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_tree(pid: int) -> list[int]:
    """pid and all its descendants (via /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def live_group_members(pgid: int) -> list[int]:
    """Non-zombie processes whose process group is pgid."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(name))
    return found


class Server:
    """One server process in its own session, so the whole group can be killed."""

    def __init__(self, name: str, argv: list[str], cpu: int | None):
        self.name = name
        self.port = free_port()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv + ["--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
        self.pgid = self.proc.pid
        if cpu is not None:
            try:  # before Python has started any thread: every later thread inherits it
                os.sched_setaffinity(self.proc.pid, {cpu})
            except OSError:
                pass

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no READY within {timeout:.0f}s{self.stderr_tail()}")
            if select.select([fd], [], [], min(left, 0.5))[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait(timeout=2)
                    raise RuntimeError(
                        f"{self.name}: exited with {self.proc.returncode} before READY{self.stderr_tail()}"
                    )
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
        if line != f"READY {self.port}":
            raise RuntimeError(f"{self.name}: expected 'READY {self.port}', got {line!r}{self.stderr_tail()}")

    def pids(self) -> list[int]:
        return pid_tree(self.proc.pid)

    def stderr_tail(self, n: int = 1500) -> str:
        try:
            self.stderr.seek(0)
            text = self.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\n--- server stderr (tail) ---\n{text[-n:]}" if text else ""

    def stop(self) -> dict:
        """SIGTERM, bounded wait, SIGKILL the group if needed. Never leaves a process."""
        info = {"exit_code": None, "killed": False}
        t0 = time.monotonic()
        if self.proc.poll() is None:
            try:
                os.killpg(self.pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                info["killed"] = True
        info["exit_code"] = self.proc.returncode
        # the main process may be gone while children of it linger: sweep the group
        deadline = time.monotonic() + 2.0
        while live_group_members(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if live_group_members(self.pgid) or self.proc.poll() is None:
            info["killed"] = True
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            info["exit_code"] = self.proc.returncode
        info["stop_s"] = round(time.monotonic() - t0, 3)
        left = live_group_members(self.pgid)
        if left:
            info["left_behind"] = left
        if self.proc.stdout:
            self.proc.stdout.close()
        return info


def run_loadgen(args: list[str], cpu: int | None, timeout: float) -> dict:
    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    proc = subprocess.run(
        [LOADGEN] + args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        preexec_fn=pin,
    )
    lines = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen exited {proc.returncode} with no result: {proc.stderr.decode()[-500:]}")
    res = json.loads(lines[-1])
    res["loadgen_exit"] = proc.returncode
    if "fatal" in res:
        raise RuntimeError(f"loadgen: {res['fatal']}")
    return res


def run_one(name: str, argv: list[str], scenario: str, prof: dict, cpus: tuple) -> dict:
    sc = SCENARIOS[scenario]
    client_cpu, server_cpu = cpus
    server = Server(name, argv, server_cpu)
    try:
        server.wait_ready()
        pids = ",".join(str(p) for p in server.pids())
        lg = ["--port", str(server.port), "--conns", str(sc["conns"]), "--server-pid", pids]
        if sc.get("idle"):
            lg += ["--idle", "--settle", "0.3"]
            timeout = 100.0
        else:
            lg += ["--size", str(sc["size"]), "--depth", str(sc["depth"])]
            lg += ["--warmup", str(prof["warmup"]), "--duration", str(prof["duration"])]
            timeout = prof["warmup"] + prof["duration"] + 100.0
        res = run_loadgen(lg, client_cpu, timeout)
        if server.proc.poll() is not None:
            res["server_died"] = server.proc.returncode
    except BaseException:
        server.stop()
        raise
    stop = server.stop()
    res["server_exit"] = stop["exit_code"]
    res["server_stop_s"] = stop["stop_s"]
    if stop["killed"]:
        res["server_killed"] = True
    if stop.get("left_behind"):
        res["left_behind"] = stop["left_behind"]
    if stop["exit_code"] not in (0, None) or stop["killed"]:
        res["server_stderr"] = server.stderr_tail(800)
    return res


# ---------------------------------------------------------------- reporting

METRICS = ("msgs_per_s", "mb_per_s", "p50_us", "p99_us", "server_cpu_us_per_msg", "rss_per_conn",
           "rss_marginal_per_conn")


def summarize(reps: list[dict]) -> dict:
    out: dict = {}
    for m in METRICS:
        vals = [r[m] for r in reps if isinstance(r.get(m), (int, float))]
        if vals:
            out[m] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
    starved = [r["starved_conns"] for r in reps if "starved_conns" in r]
    if starved:  # connections that completed nothing in a measured window (worst rep)
        out["starved_conns"] = max(starved)
    out["errors"] = sum(r.get("errors", 0) + r.get("connect_errors", 0) for r in reps)
    out["mismatches"] = sum(r.get("mismatches", 0) for r in reps)
    out["failed_reps"] = sum(1 for r in reps if "failure" in r)
    out["unclean_exits"] = sum(1 for r in reps if r.get("server_exit") not in (0, None) or r.get("server_killed"))
    return out


def fmt(v: float) -> str:
    if v >= 100000:
        return f"{v / 1000:.0f}k"
    if v >= 10000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(s: dict, m: str, spread: bool = True) -> str:
    if m not in s:
        return "-"
    d = s[m]
    if spread and d["n"] > 1:
        return f"{fmt(d['median'])} [{fmt(d['min'])}-{fmt(d['max'])}]"
    return fmt(d["median"])


def table(results: dict) -> str:
    head = ["scenario", "server", "msgs/s [min-max]", "MB/s", "p50 us", "p99 us", "CPU us/msg", "starved",
            "RSS B/conn", "2nd half", "err"]
    rows = []
    for scenario, per_server in results.items():
        for server, entry in per_server.items():
            s = entry["summary"]
            bad = s["errors"] + s["mismatches"]
            notes = str(bad)
            if s["failed_reps"]:
                notes += f" ({s['failed_reps']} failed)"
            if s["unclean_exits"]:
                notes += f" ({s['unclean_exits']} unclean exit)"
            rows.append(
                [
                    scenario,
                    server,
                    cell(s, "msgs_per_s"),
                    cell(s, "mb_per_s", False),
                    cell(s, "p50_us", False),
                    cell(s, "p99_us", False),
                    cell(s, "server_cpu_us_per_msg", False),
                    str(s["starved_conns"]) if "starved_conns" in s else "-",
                    cell(s, "rss_per_conn"),
                    cell(s, "rss_marginal_per_conn", False),
                    notes,
                ]
            )
    return columns(head, rows, 2)


def columns(head: list[str], rows: list[list], left: int) -> str:
    """Rows as aligned text under ``head``: the first ``left`` columns flush
    left, the rest flush right, a blank line where the first column changes."""
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out = [line(head), "  ".join("-" * w for w in widths)]
    prev = None
    for r in rows:
        if prev is not None and r[0] != prev:
            out.append("")
        prev = r[0]
        out.append(line(r))
    return "\n".join(out)


# Peers each gaio server is compared with in paired(), in this order.
REFERENCES = ("uvloop", "asyncio-protocol")


def round_order(names: list[str]) -> list[str]:
    """The order of one round of repetitions: each gaio server beside the
    reference peer it is measured against (the first gaio server, the best
    engine, beside REFERENCES[0], the next beside REFERENCES[1], ...), chained
    as G1 R1 R2 G2 G3 R3 ..., then the other servers. main() runs every other
    round backwards, so each pair runs back to back, and each of the two
    first as often as the other."""
    gaio = [n for n in names if n.startswith("gaio-")]
    refs = [p for p in REFERENCES if p in names]
    pairs = [[g, r] for g, r in zip(gaio, refs)]
    for k in range(1, len(pairs), 2):
        pairs[k].reverse()
    order = [n for pair in pairs for n in pair]
    return order + [n for n in names if n not in order]


def paired(results: dict) -> dict:
    """gaio against each reference peer, repetition by repetition.

    Repetitions go round the servers, so rep i of every server ran in the same
    round, minutes apart at most (a gaio server and the peer it is measured
    against back to back: round_order): the ratio within a round cancels most
    of the host's drift, which moves every server's absolute figures by up to a third
    over a day. Per scenario, gaio server and peer, over the rounds where both
    measured: CPU per message and msgs/s as gaio / peer, p50 as gaio - peer in
    microseconds, idle RSS per connection as gaio / peer; each as median, min, max, n.
    """
    out: dict = {}
    for scenario, per_server in results.items():
        for peer in REFERENCES:
            ref = per_server.get(peer)
            if ref is None:
                continue
            for server, entry in per_server.items():
                if not server.startswith("gaio-"):
                    continue
                figures: dict = {}
                for metric, how in (("server_cpu_us_per_msg", "ratio"), ("msgs_per_s", "ratio"),
                                    ("p50_us", "diff"), ("rss_per_conn", "ratio")):
                    vals = []
                    for mine, theirs in zip(entry["reps"], ref["reps"]):
                        a, b = mine.get(metric), theirs.get(metric)
                        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
                            vals.append(a / b if how == "ratio" else a - b)
                    if vals:
                        figures[metric] = {"median": statistics.median(vals), "min": min(vals),
                                           "max": max(vals), "n": len(vals), "as": how}
                if figures:
                    out.setdefault(scenario, {}).setdefault(server, {})[peer] = figures
    return out


def paired_table(pairs: dict) -> str:
    """paired() as text: one line per scenario, gaio server and peer."""
    def spread(d: dict | None, sign: bool = False) -> str:
        if d is None:
            return "-"
        f = (lambda v: f"{v:+.1f}") if sign else (lambda v: f"{v:.2f}")
        return f"{f(d['median'])} [{f(d['min'])} {f(d['max'])}]" if d["n"] > 1 else f(d["median"])

    head = ["scenario", "server", "vs", "CPU/msg ratio", "msgs/s ratio", "p50 diff us", "RSS ratio"]
    rows = []
    for scenario, per_server in pairs.items():
        for server, per_peer in per_server.items():
            for peer, f in per_peer.items():
                rows.append([scenario, server, peer, spread(f.get("server_cpu_us_per_msg")),
                             spread(f.get("msgs_per_s")),
                             spread(f.get("p50_us"), True) if scenario == "pingpong" else "-",
                             spread(f.get("rss_per_conn"))])
    return columns(head, rows, 3) if rows else ""


def chart(results: dict, path: str) -> str | None:
    """Bar chart per scenario; returns a notice instead if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not available: no chart (pip install matplotlib, or the bench extra)"
    scenarios = list(results)
    ncols = min(3, len(scenarios))
    nrows = (len(scenarios) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(scenarios):]:
        ax.set_visible(False)
    for ax, scenario in zip(flat, scenarios):
        metric, label = ("rss_per_conn", "server RSS bytes / idle conn") if scenario == "idle" else ("msgs_per_s", "msgs/s")
        names, med, lo, hi = [], [], [], []
        for server, entry in results[scenario].items():
            d = entry["summary"].get(metric)
            if not d:
                continue
            names.append(server)
            med.append(d["median"])
            lo.append(d["median"] - d["min"])
            hi.append(d["max"] - d["median"])
        colors = ["tab:blue" if n.startswith("gaio") else "tab:gray" for n in names]
        ax.bar(range(len(names)), med, yerr=[lo, hi], color=colors, capsize=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{scenario}: {label}", fontsize=9)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    fig.suptitle("gaio echo benchmarks (median, bars: min-max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    info["cpu_model"] = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import gaio

        info["gaio"] = getattr(gaio, "__version__", "?")
        info["gaio_path"] = os.path.dirname(gaio.__file__)
        info["gaio_implementation"] = getattr(gaio, "implementation", "python")  # mypyc or python
        from gaio.backends import base

        info["gaio_spin_us"] = base.spin_ns() // 1000  # the servers inherit GAIO_SPIN_US
    except Exception:  # noqa: BLE001
        pass
    return info


# ---------------------------------------------------------------- main


def parse_list(value: str | None, known: list[str], what: str) -> list[str]:
    if not value:
        return known
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; available here: {', '.join(known)}")
    return chosen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="gaio echo benchmarks", formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="scenarios:\n" + "\n".join(f"  {k:9} {v['doc']}" for k, v in SCENARIOS.items()))
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short windows (default)")
    g.add_argument("--full", action="store_true", help="long windows (also FULL=1 in the environment)")
    ap.add_argument("--servers", help="comma-separated subset (see --list)")
    ap.add_argument("--scenarios", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--reps", type=int, help="repetitions per (server, scenario)")
    ap.add_argument("--warmup", type=float, help="seconds of traffic before measuring")
    ap.add_argument("--duration", type=float, help="seconds measured")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for the JSON and PNG")
    ap.add_argument("--no-save", action="store_true", help="print the table only")
    ap.add_argument("--list", action="store_true", help="list servers and scenarios, then exit")
    args = ap.parse_args(argv)

    servers, notices = all_servers()
    for n in notices:
        log(f"notice: {n}")
    if args.list:
        print("servers:   " + ", ".join(servers))
        print("scenarios: " + ", ".join(SCENARIOS))
        return 0
    chosen_servers = parse_list(args.servers, list(servers), "server")
    chosen_scenarios = parse_list(args.scenarios, list(SCENARIOS), "scenario")
    full = args.full or (not args.quick and os.environ.get("FULL", "") not in ("", "0"))
    profile_name = "full" if full else "quick"
    prof = dict(PROFILES[profile_name])
    for k in ("reps", "warmup", "duration"):
        if getattr(args, k) is not None:
            prof[k] = getattr(args, k)

    build_loadgen()
    cpus = pick_cpus()
    if cpus[0] is None:
        log("notice: fewer than 2 CPUs usable: client and server are not pinned")
    else:
        log(f"pinning: loadgen on cpu {cpus[0]}, server on cpu {cpus[1]}")
        try:
            os.sched_setaffinity(0, {cpus[0]})  # keep this driver off the server's core
        except OSError:
            pass
    log(
        f"profile {profile_name}: {prof['reps']} reps, warmup {prof['warmup']}s, duration {prof['duration']}s; "
        f"servers {','.join(chosen_servers)}; scenarios {','.join(chosen_scenarios)}"
    )
    if "GAIO_SPIN_US" in os.environ:  # the servers inherit it (bench/README.md, CPU us/msg)
        log(f"gaio servers spin for at most GAIO_SPIN_US={os.environ['GAIO_SPIN_US']} us")

    started = time.time()
    results: dict = {}
    failures = 0
    try:
        for scenario in chosen_scenarios:
            results[scenario] = {}
            names = round_order([n for n in chosen_servers if scenario in ONLY_IN.get(n, (scenario,))])
            # Repetitions go round the servers (A B C C B A A B C ...), not one
            # server's all at once: a slow spell of the machine, or a run that
            # lands in loopback TCP's slow mode (see bench/README.md), then
            # falls on every server alike instead of on one of them.
            for i in range(prof["reps"]):
                for name in names if i % 2 == 0 else names[::-1]:
                    try:
                        res = run_one(name, servers[name], scenario, prof, cpus)
                    except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
                        res = {"failure": str(exc)}
                        failures += 1
                        log(f"  {scenario:8} {name:17} rep {i + 1}: FAILED: {exc}")
                    else:
                        brief = (
                            f"{res['rss_per_conn']:.0f} B/conn"
                            f" (2nd half {res.get('rss_marginal_per_conn', float('nan')):.0f})"
                            if "rss_per_conn" in res
                            else f"{res.get('msgs_per_s', 0):.0f} msgs/s"
                        )
                        bad = res.get("errors", 0) + res.get("connect_errors", 0) + res.get("mismatches", 0)
                        extra = f", {bad} errors: {res.get('first_error', '')}" if bad else ""
                        if res.get("server_exit") not in (0, None) or res.get("server_killed"):
                            extra += f", server exit {res.get('server_exit')}{' (killed)' if res.get('server_killed') else ''}"
                        log(f"  {scenario:8} {name:17} rep {i + 1}: {brief}{extra}")
                    results[scenario].setdefault(name, {"reps": []})["reps"].append(res)
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    for per_server in results.values():
        for entry in per_server.values():
            entry["summary"] = summarize(entry["reps"])

    elapsed = time.time() - started
    print()
    print(table(results))
    pairs = paired(results)
    text = paired_table(pairs)
    if text:
        print("\ngaio against its peers, round by round (median [min max] over the rounds;"
              " CPU/msg and RSS below 1, msgs/s above 1, p50 below 0 favour gaio):")
        print(text)
    print(f"\n{profile_name} profile, {prof['reps']} reps each, {elapsed:.0f}s total")

    if not args.no_save and results:
        os.makedirs(args.out, exist_ok=True)
        stamp = _dt.date.today().isoformat()
        doc = {
            "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "profile": profile_name,
            "params": prof,
            "pinning": {"client_cpu": cpus[0], "server_cpu": cpus[1]},
            "machine": machine_info(),
            "scenarios": {k: {kk: vv for kk, vv in SCENARIOS[k].items()} for k in results},
            "notices": notices,
            "elapsed_s": round(elapsed, 1),
            "results": results,
            "paired": pairs,
        }
        n = 1
        while os.path.exists(os.path.join(args.out, f"{stamp}.json")):  # keep earlier runs of the day
            n += 1
            stamp = f"{_dt.date.today().isoformat()}-{n}"
        path = os.path.join(args.out, f"{stamp}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, path)
        print(f"wrote {os.path.relpath(path)}")
        png = os.path.join(args.out, f"{stamp}.png")
        notice = chart(results, png)
        print(f"notice: {notice}" if notice else f"wrote {os.path.relpath(png)}")
    bad = failures + sum(
        e["summary"]["errors"] + e["summary"]["mismatches"] for per in results.values() for e in per.values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
