#!/usr/bin/env python3
"""The osintd fan-out benchmark: osintd against a `websockets` broadcast()
reference server, both started by this script in the same run and driven by
the same Node.js load generator (tests/bench/loadgen.js, the `ws` package).

    .venv/bin/python tests/bench/run.py [--quick] [--out results.json]

Prints a Markdown table (osintd, reference, osintd/reference) and writes
every number it measured as JSON.  See tests/bench/README.md.

Everything listens on 127.0.0.1.  Every process this script starts is ended
by it, by PID, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import platform
import queue
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # tests/: the redis-server the cluster tests start, started the same way
import gharchive  # noqa: E402
import realshape  # noqa: E402
from redisserver import answers_ping, redis_argv  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
WS_PATH = "/ws/live-updates"

FULL: dict[str, Any] = {
    "workers": 2,                        # load generator processes
    "sat_clients": [100, 1000, 5000],    # saturation
    "sat_warmup": 5.0, "sat_window": 10.0,
    "osintd_sat_rate": 100_000,          # --demo-rate for saturation (the pipeline backs up, never drops)
    "client_queue": None,                # osintd --client-queue: None keeps the defaults, as a user runs it
    "lat": [[100, 20.0], [1000, 5.0]],   # (clients, msg/s)
    "lat_warmup": 3.0, "lat_window": 20.0,
    "mem_clients": 5000, "mem_settle": 2.5,
    "slow_clients": 1000, "slow_fraction": 0.01, "slow_rate": 50.0, "slow_queue": None,
    "slow_warmup": 3.0, "slow_window": 30.0, "slow_rcvbuf": 4096, "slow_drain": 5.0,
    "ingest_events": 200_000, "ingest_span": 3600.0, "ingest_repos": 10_000, "ingest_max_seconds": 60.0,
    "ingest_runs": 3,                    # the median run is reported: one run moves by about +-8 % here
    # real: the shared real GH Archive hours and a generated file of real shape (realshape.py), each
    # replayed by osintd against one Python process gunzipping and parsing the same file
    "real_hours": 12.0, "real_per_hour": 12_000, "real_seed": 1,
    "real_reference_runs": 3,            # the best of these is the reference
    "real_runs": 3,                      # osintd replays; the median is reported (one run moves by +-15 % here)
    "real_max_seconds": 600.0,           # time cap on one osintd replay (from start-up)
    "real_poll": 0.05,                   # seconds between /metrics reads: the resolution of the replay time
    "hold_clients": 10_000, "hold_heartbeat": 2.0, "hold_seconds": 5.5,
    # overload: a replay whose rate ramps past what osintd can deliver to ramp_clients clients
    "ramp_clients": 1000, "ramp_lead": 12.0,
    "ramp_steps": [[50, 5.0], [100, 5.0], [200, 5.0], [400, 5.0], [800, 5.0], [1600, 5.0]],
    "reference_high_water": 64 * 1024,
    # cluster (issue 16): osintd nodes on a redis-server the bench starts.  hop: the latency row's
    # load against one node alone, one node with --redis (it leads) and a follower of a leader that
    # has no clients; edges: a leader offering edge_rate events/s (more than one edge can fan out
    # to edge_clients), its clients all on one follower or split over two.
    "hop": [1000, 5.0], "hop_runs": 3,
    "edge_clients": 1000, "edge_rate": 400.0, "edge_runs": 3,
}
QUICK: dict[str, Any] = {
    **FULL,
    "sat_clients": [100, 1000], "sat_warmup": 1.5, "sat_window": 3.0,
    "lat_warmup": 1.5, "lat_window": 4.0,
    "mem_clients": 1000, "mem_settle": 1.5,
    "slow_rate": 50.0, "slow_warmup": 1.0, "slow_window": 6.0, "slow_drain": 2.0,
    "ingest_events": 20_000, "ingest_max_seconds": 8.0, "ingest_runs": 1,
    "real_hours": 2.0, "real_max_seconds": 120.0, "real_runs": 1,
    "hold_clients": 2000, "hold_seconds": 4.2,
    "ramp_clients": 500, "ramp_lead": 6.0, "ramp_steps": [[50, 3.0], [200, 3.0], [800, 3.0], [3200, 3.0]],
    "hop_runs": 1, "edge_runs": 1,
}


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


STARTED = time.monotonic()


# ------------------------------------------------------------------ processes


class Processes:
    """Every child this script starts, so that all of them are ended by PID."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[subprocess.Popen] = []
        self.extra_pids: list[int] = []  # the load generator's workers
        self._count = 0

    def spawn(self, name: str, cmd: list[str], **kwargs) -> subprocess.Popen:
        self._count += 1
        path = self.logdir / f"{self._count:02d}-{name}.log"
        out = open(path, "wb")
        kwargs.setdefault("stdout", out)
        proc = subprocess.Popen(cmd, stderr=out, cwd=ROOT, **kwargs)
        proc.log_path = path  # type: ignore[attr-defined]
        out.close()  # the child holds its own copy
        self.children.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(self.children):
            self.stop(proc, timeout=5.0)
        for pid in self.extra_pids:
            kill_if_ours(pid)


def kill_if_ours(pid: int) -> None:
    """SIGKILL a load-generator worker if it is still alive (checked by its command line)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"loadgen.js" in cmdline:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(port: int, path: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        return json.loads(answer.read())


def http_text(port: int, path: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        return answer.read().decode()


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, interrupts) CPU seconds of all cores together: busy is everything but idle and iowait;
    interrupts (irq + softirq) is mostly the kernel moving our loopback TCP traffic, charged to no process."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # up to steal; guest is inside user
    return busy / CLK_TCK, (fields[5] + fields[6]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


# --------------------------------------------------------------------- servers


class Server:
    def __init__(self, procs: Processes, kind: str, args: list[str], name: str) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "osintd":
            cmd = [sys.executable, "-m", "osintd", "--port", str(self.port), *args]
        else:
            cmd = [sys.executable, str(HERE / "reference_server.py"), "--port", str(self.port), *args]
        self.cmd = cmd
        self.procs = procs
        self.proc = procs.spawn(name, cmd)
        self.pid = self.proc.pid
        self.url = f"ws://127.0.0.1:{self.port}{WS_PATH}"
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {self.proc.returncode} at start-up:\n{self.log_tail()}")
            try:
                http_text(self.port, "/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not answer /health within 30 s:\n{self.log_tail()}")
                time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.proc.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def tracebacks(self) -> list[str]:
        try:
            text = Path(self.proc.log_path).read_text(errors="replace").splitlines()
        except OSError:
            return []
        found = []
        for i, line in enumerate(text):
            if line.startswith("Traceback"):
                found.append("\n".join(text[max(0, i - 1): i + 25]))
        return found

    def rss_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmRSS")

    def rss_settled_kb(self, samples: int = 5, interval: float = 0.2) -> float:
        values = []
        for _ in range(samples):
            values.append(self.rss_kb() or 0)
            time.sleep(interval)
        return statistics.median(values)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stats(self) -> dict:
        """The server's own counters (clients list left out)."""
        try:
            if self.kind == "osintd":
                stats = http_json(self.port, "/ws/stats", timeout=10)
                stats.pop("clients", None)
                return stats
            return http_json(self.port, "/stats", timeout=10)
        except OSError as exc:
            return {"error": f"stats unavailable: {exc}"}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> dict:
        crashed = not self.alive()
        code = self.procs.stop(self.proc, timeout=15)
        return {"crashed_before_stop": crashed, "exit_code": code, "tracebacks": self.tracebacks()[:3]}


def osintd_args(rate: float, queue_size: int | None, heartbeat: float = 3600.0) -> list[str]:
    """osintd's command line; ``queue_size`` None keeps its defaults for dropping slow clients."""
    return ["--demo", "--demo-rate", f"{rate:g}", "--demo-seed", "1", "--heartbeat-interval", f"{heartbeat:g}",
            "--metrics-interval", "3600", "--max-clients", "20000",
            *(["--client-queue", str(queue_size)] if queue_size is not None else [])]


def reference_args(rate: float | str, high_water: int, heartbeat: float = 3600.0) -> list[str]:
    return ["--rate", str(rate), "--heartbeat-interval", f"{heartbeat:g}", "--high-water", str(high_water)]


class RedisProc:
    """A redis-server for the cluster rows: a free loopback port, its own directory, the
    append-only file on (as the README asks of a cluster's Redis, with the default fsync
    every second), started fresh for each measurement and stopped by its PID; never the
    system's service (the same way as tests/redisserver.py)."""

    def __init__(self, procs: Processes, name: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        directory = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=procs.logdir))
        self.proc = procs.spawn(name, redis_argv(exe, self.port, directory))
        self.pid = self.proc.pid
        self.url = f"redis://127.0.0.1:{self.port}/0"
        if not answers_ping(self.port, lambda: self.proc.poll() is None, 10):
            Processes.stop(self.proc)
            raise RuntimeError(f"redis-server did not start (log: {self.proc.log_path})")  # type: ignore[attr-defined]

    def stop(self) -> None:
        Processes.stop(self.proc)


def wait_for_role(server: Server, role: str, timeout: float = 30.0) -> dict:
    """Poll the node's /api/v1/health until it has ``role`` (and, a follower, knows its leader)."""
    deadline = time.monotonic() + timeout
    health: dict = {}
    while time.monotonic() < deadline:
        try:
            health = http_json(server.port, "/api/v1/health", timeout=2)
        except (OSError, ValueError):
            health = {}
        if health.get("role") == role and (health.get("cluster") or {}).get("leader"):
            return health
        if not server.alive():
            break
        time.sleep(0.1)
    raise RuntimeError(f"osintd on port {server.port} did not become {role} within {timeout:.0f} s "
                       f"(last health: {health}):\n{server.log_tail()}")


# ---------------------------------------------------------------- load generator


class LoadGen:
    def __init__(self, procs: Processes, url: str, clients: int, workers: int, max_seconds: float) -> None:
        cmd = ["node", str(HERE / "loadgen.js"), "--url", url, "--clients", str(clients),
               "--workers", str(workers), "--concurrency", "64", "--max-seconds", f"{max_seconds:.0f}"]
        self.procs = procs
        self.proc = procs.spawn("loadgen", cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines: queue.Queue = queue.Queue()
        self.pids: list[int] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                pass
        self.lines.put({"event": "eof"})

    def _send(self, cmd: str) -> None:
        self.proc.stdin.write(json.dumps({"cmd": cmd}).encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"load generator: no {event!r} within {timeout:.0f} s") from None
            if msg.get("event") == event:
                return msg
            if msg.get("event") in ("error", "eof"):
                raise RuntimeError(f"load generator failed while waiting for {event!r}: {msg}")

    def ready(self, timeout: float) -> dict:
        info = self.wait_for("ready", timeout)
        self.pids = info["pids"][1:]
        self.procs.extra_pids.extend(self.pids)
        return info

    def start(self) -> None:
        self._send("start")
        self.wait_for("started", 30)

    def stop(self) -> dict:
        self._send("stop")
        return self.wait_for("stats", 60)

    def close(self) -> None:
        try:
            self._send("quit")
        except OSError:
            pass
        if self._wait(5) is None:
            Processes.stop(self.proc, timeout=10)
        for pid in self.pids:
            kill_if_ours(pid)

    def _wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._stop_event.is_set():
            rss = proc_status_kb(self.pid, "VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic() - t0, rss))
            self._stop_event.wait(self.interval)

    def finish(self) -> dict:
        self._stop_event.set()
        self.join(2)
        values = [rss for _, rss in self.samples] or [0]
        return {"start_kb": values[0], "end_kb": values[-1], "peak_kb": max(values), "min_kb": min(values)}


def summarize_window(st: dict, seconds: float, server_cpu: float) -> dict:
    lat = st["latency_ms"]
    return {
        "new_event_per_second": st["new_event_per_second"], "frames_per_second": st["frames_per_second"],
        "avg_new_event_bytes": st["avg_new_event_bytes"],
        "latency_ms": {k: lat[k] for k in ("count", "mean", "p50", "p90", "p99", "p999", "max")},
        "negative_latencies": st["negative_latencies"],
        "per_client_new_event_min": st["min_new_event_per_client"],
        "per_client_new_event_max": st["max_new_event_per_client"],
        "open_at_end": st["open"], "closed_in_window": st["closed_in_window"],
        "close_codes_in_window": st["close_codes_in_window"],
        "window_seconds": st["seconds"],
        "server_cpu_percent": 100.0 * server_cpu / seconds,
        "generator_cpu_percent_total": 100.0 * st["worker_cpu_seconds"] / st["seconds"],
        "generator_cpu_percent_max_worker": st["worker_cpu_percent_max"],
    }


# -------------------------------------------------------------------- scenarios


class Bench:
    def __init__(self, cfg: dict, procs: Processes, logdir: Path, profile_dir: Path | None = None) -> None:
        self.cfg, self.procs, self.logdir = cfg, procs, logdir
        self.profile_dir = profile_dir
        self.problems: list[str] = []

    def _profile(self, server: Server, seconds: float) -> subprocess.Popen | None:
        """With --profile: py-spy samples osintd for ``seconds`` (a flame graph per measuring window)."""
        if self.profile_dir is None or server.kind != "osintd":
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out = self.profile_dir / f"{Path(server.proc.log_path).stem}.svg"
        return self.procs.spawn("py-spy", [spy, "record", "--pid", str(server.pid), "--duration",
                                           str(max(1, int(seconds))), "--nonblocking", "-o", str(out)])

    @staticmethod
    def _profile_done(spy: subprocess.Popen | None) -> None:
        if spy is not None:
            try:
                spy.wait(15)
            except subprocess.TimeoutExpired:
                Processes.stop(spy)

    def _server(self, kind: str, what: str, osintd: list[str], reference: list[str]) -> Server:
        return Server(self.procs, kind, osintd if kind == "osintd" else reference, f"{kind}-{what}")

    def _finish(self, server: Server, result: dict, what: str) -> None:
        end = server.stop()
        result["server_exit"] = end
        if end["crashed_before_stop"] or end["tracebacks"] or end["exit_code"] not in (0, None):
            note = (f"{server.kind} {what}: exit code {end['exit_code']}, crashed before stop: "
                    f"{end['crashed_before_stop']}, {len(end['tracebacks'])} traceback(s) in {server.proc.log_path}")
            self.problems.append(note)
            log("PROBLEM: " + note)

    def _connect(self, server: Server, clients: int, extra_seconds: float,
                 url: str | None = None) -> tuple[LoadGen, dict]:
        """``url``: where the clients go, if not ``server`` (several servers, comma-separated)."""
        lg = LoadGen(self.procs, url or server.url, clients, self.cfg["workers"],
                     max_seconds=120 + clients / 40 + extra_seconds)
        info = lg.ready(timeout=60 + clients / 40)
        if info["failed"]:
            note = f"{server.kind}: {info['failed']} of {clients} clients failed to connect: {info['errors']}"
            self.problems.append(note)
            log("PROBLEM: " + note)
        return lg, info

    def _window(self, server: Server, lg: LoadGen, warmup: float, window: float,
                also: dict[str, int] | None = None) -> tuple[dict, dict]:
        """``also``: more processes of the run under test (name → PID: cluster nodes, Redis), whose
        CPU is recorded beside the server's and not counted as other processes'."""
        also = also or {}
        time.sleep(warmup)
        spy = self._profile(server, window)
        (busy0, irq0), cpu0, t0 = machine_cpu_seconds(), server.cpu(), time.monotonic()
        also0 = {name: cpu_seconds(pid) for name, pid in also.items()}
        lg.start()
        time.sleep(window)
        st = lg.stop()
        (busy1, irq1), cpu1, t1 = machine_cpu_seconds(), server.cpu(), time.monotonic()
        also_percent = {name: 100.0 * (cpu_seconds(pid) - also0[name]) / (t1 - t0) for name, pid in also.items()}
        self._profile_done(spy)
        summary = summarize_window(st, t1 - t0, cpu1 - cpu0)
        summary["machine_busy_percent"] = 100.0 * (busy1 - busy0) / (t1 - t0)
        summary["interrupt_cpu_percent"] = 100.0 * (irq1 - irq0) / (t1 - t0)
        if also:
            summary["also_cpu_percent"] = also_percent
        # What neither the server, the generator nor the network stack used: other processes (noise).
        summary["other_cpu_percent"] = max(0.0, summary["machine_busy_percent"] - summary["server_cpu_percent"]
                                           - summary["interrupt_cpu_percent"] - sum(also_percent.values())
                                           - 100.0 * st["worker_cpu_seconds"] / st["seconds"])
        summary["loadavg"] = os.getloadavg()[0]
        return st, summary

    # -- delivered messages per second at saturation

    def saturation(self, kind: str, clients: int) -> dict:
        cfg = self.cfg
        server = self._server(kind, f"sat{clients}",
                              osintd_args(cfg["osintd_sat_rate"], cfg["client_queue"]),
                              reference_args("max", cfg["reference_high_water"]))
        result: dict[str, Any] = {"server": kind, "clients": clients, "cmd": server.cmd}
        lg = None
        try:
            lg, info = self._connect(server, clients, cfg["sat_warmup"] + cfg["sat_window"])
            result["connect"] = _connect_summary(info)
            st, result["window"] = self._window(server, lg, cfg["sat_warmup"], cfg["sat_window"])
            result["rss_kb"] = server.rss_kb()
            result["server_stats"] = server.stats()
            _note_closes(self, kind, f"saturation {clients}", st)
        finally:
            if lg:
                lg.close()
            self._finish(server, result, f"saturation {clients} clients")
        w = result["window"]
        log(f"saturation {clients:>5} clients  {kind:9}: {w['new_event_per_second']:>10,.0f} new_event/s delivered"
            f"  (CPU: server {w['server_cpu_percent']:.0f}%, generator {w['generator_cpu_percent_total']:.0f}%, "
            f"softirq {w['interrupt_cpu_percent']:.0f}%, other processes {w['other_cpu_percent']:.0f}%)")
        return result

    # -- creation-to-arrival latency at a moderate rate

    def latency(self, kind: str, clients: int, rate: float) -> dict:
        cfg = self.cfg
        server = self._server(kind, f"lat{clients}", osintd_args(rate, cfg["client_queue"]),
                              reference_args(rate, cfg["reference_high_water"]))
        result: dict[str, Any] = {"server": kind, "clients": clients, "rate": rate, "cmd": server.cmd}
        lg = None
        try:
            lg, info = self._connect(server, clients, cfg["lat_warmup"] + cfg["lat_window"])
            result["connect"] = _connect_summary(info)
            st, result["window"] = self._window(server, lg, cfg["lat_warmup"], cfg["lat_window"])
            result["rss_kb"] = server.rss_kb()
            _note_closes(self, kind, f"latency {clients}", st)
        finally:
            if lg:
                lg.close()
            self._finish(server, result, f"latency {clients} clients")
        lat = result["window"]["latency_ms"]
        log(f"latency    {clients:>5} clients @ {rate:g}/s {kind:9}: p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms"
            f"  ({lat['count']:,} samples)")
        return result

    # -- resident memory per idle connection

    def memory(self, kind: str, clients: int) -> dict:
        cfg = self.cfg
        server = self._server(kind, f"mem{clients}", osintd_args(0.1, cfg["client_queue"]),
                              reference_args(0, cfg["reference_high_water"]))
        result: dict[str, Any] = {"server": kind, "clients": clients, "cmd": server.cmd}
        lg = None
        try:
            time.sleep(cfg["mem_settle"])
            rss0 = server.rss_settled_kb()
            lg, info = self._connect(server, clients, 10)
            result["connect"] = _connect_summary(info)
            time.sleep(cfg["mem_settle"])
            rss1 = server.rss_settled_kb()
            connected = info["connected"]
            result.update(rss_idle0_kb=rss0, rss_idleN_kb=rss1, connected=connected,
                          per_connection_kb=(rss1 - rss0) / max(connected, 1))
        finally:
            if lg:
                lg.close()
            self._finish(server, result, f"memory {clients} clients")
        log(f"memory     {clients:>5} idle clients {kind:9}: {result['per_connection_kb']:.1f} KB per connection"
            f"  (RSS {rss0 / 1024:.1f} → {rss1 / 1024:.1f} MiB)")
        return result

    # -- 1% of clients stop reading

    def slow(self, kind: str, with_slow: bool) -> dict:
        cfg = self.cfg
        total = cfg["slow_clients"]
        n_slow = max(1, round(total * cfg["slow_fraction"]))
        fast = total - n_slow
        server = self._server(kind, "slow" if with_slow else "slowbase",
                              osintd_args(cfg["slow_rate"], cfg["slow_queue"]),
                              reference_args(cfg["slow_rate"], cfg["reference_high_water"]))
        result: dict[str, Any] = {"server": kind, "fast_clients": fast, "slow_clients": n_slow if with_slow else 0,
                                  "rate": cfg["slow_rate"], "cmd": server.cmd}
        lg = None
        socks: list[socket.socket] = []
        try:
            lg, info = self._connect(server, fast, cfg["slow_warmup"] + cfg["slow_window"] + 10)
            result["connect"] = _connect_summary(info)
            if with_slow:
                socks = [slow_client(server.port, cfg["slow_rcvbuf"]) for _ in range(n_slow)]
            sampler = RssSampler(server.pid)
            sampler.start()
            st, result["window"] = self._window(server, lg, cfg["slow_warmup"], cfg["slow_window"])
            result["rss"] = sampler.finish()
            result["rss"]["hwm_kb"] = proc_status_kb(server.pid, "VmHWM")
            result["server_stats"] = server.stats()
            if with_slow:
                states = drain_slow(socks, timeout=cfg["slow_drain"])
                result["slow_states"] = states
                result["slow_sockets_closed"] = sum(1 for s in states if s["state"] != "open")
                stats = result["server_stats"]
                # osintd counts the clients it decides to drop; the reference has no such counter.
                result["slow_dropped"] = (stats.get("slow_consumers_dropped") if kind == "osintd"
                                          else n_slow - max(0, stats.get("connections", total) - fast))
            _note_closes(self, kind, "slow-client run", st)
        finally:
            for s in socks:
                s.close()
            if lg:
                lg.close()
            self._finish(server, result, "slow clients" if with_slow else "slow-client baseline")
        lat = result["window"]["latency_ms"]
        extra = (f", slow clients dropped {result['slow_dropped']}/{n_slow} (their sockets closed by "
                 f"{cfg['slow_drain']:g} s after the window: {result['slow_sockets_closed']}/{n_slow})"
                 if with_slow else "")
        log(f"slow {'with' if with_slow else 'w/o '} {n_slow} slow {kind:9}: fast p99 {lat['p99']:.2f} ms"
            f"{extra}, peak RSS {result['rss']['peak_kb'] / 1024:.1f} MiB")
        return result

    # -- ingest through normalizer, scorer and differ

    def ingest(self) -> dict:
        """The median of ``ingest_runs`` runs (by events/s), with every run's rate beside it."""
        runs = [self._ingest_once(number) for number in range(1, self.cfg["ingest_runs"] + 1)]
        median = sorted(runs, key=lambda r: r.get("events_per_second") or 0.0)[len(runs) // 2]
        return {**median, "runs_events_per_second": [r.get("events_per_second") for r in runs]}

    def _ingest_once(self, number: int) -> dict:
        cfg = self.cfg
        path, meta = gharchive_file(cfg["ingest_events"], cfg["ingest_span"], cfg["ingest_repos"])
        server = Server(self.procs, "osintd", ["--replay", str(path), "--replay-speed", "max",
                                                "--heartbeat-interval", "3600", "--metrics-interval", "3600"],
                        f"osintd-ingest-{number}")
        result: dict[str, Any] = {"server": "osintd", "file": meta, "cmd": server.cmd}
        expected = meta["events"]
        samples: list[tuple[float, float]] = []
        finished = False
        try:
            spy = self._profile(server, cfg["ingest_max_seconds"])
            t_begin = time.monotonic()
            cpu0 = server.cpu()
            while time.monotonic() - t_begin < cfg["ingest_max_seconds"]:
                count = ingested(server.port)
                samples.append((time.monotonic(), count))
                if count >= expected:
                    finished = True
                    break
                if not server.alive():
                    break
                time.sleep(0.2)
            cpu1 = server.cpu()
            self._profile_done(spy)
            first = next(((t, c) for t, c in samples if c > 0), samples[0])
            last = samples[-1]
            rate = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else 0.0
            tail = [s for s in samples if s[0] >= last[0] - 5.0]
            tail_rate = (tail[-1][1] - tail[0][1]) / (tail[-1][0] - tail[0][0]) if len(tail) > 1 and \
                tail[-1][0] > tail[0][0] else None
            result.update(events_expected=expected, events_ingested=last[1], finished=finished,
                          seconds=last[0] - first[0], events_per_second=rate,
                          events_per_second_last_5s=tail_rate,
                          server_cpu_percent=100 * (cpu1 - cpu0) / max(last[0] - t_begin, 1e-9),
                          rss_kb=server.rss_kb())
        finally:
            self._finish(server, result, "ingest")
        log(f"ingest: {result['events_ingested']:,.0f} of {expected:,} events in {result['seconds']:.1f} s → "
            f"{result['events_per_second']:,.0f} events/s{'' if finished else ' (time cap reached: not finished)'}")
        return result

    # -- real data: a replay of real hours against gunzip + parse of the same file

    def real(self) -> dict:
        """Issue 13's target: a replay of real hours finishes in at most 2x the time one Python
        process takes to gunzip and parse the same lines.  Two inputs, each measured in this run:
        the shared real GH Archive hours (skipped if ``../shared/real-github`` is absent) and a
        generated file of real shape (``realshape.py``)."""
        cfg = self.cfg
        inputs: list[dict] = []
        shared = shared_real_hours()
        if shared is None:
            note = f"no shared data: {SHARED_HOURS_DIR} does not hold {', '.join(SHARED_HOURS)}"
            log(f"real shared real hours: skipped ({note})")
            inputs.append({"input": "shared real hours", "skipped": note})
        else:
            inputs.append(self._real_input("shared real hours", *shared))
        path, meta = realshape_file(cfg["real_hours"], cfg["real_per_hour"], cfg["real_seed"])
        inputs.append(self._real_input(f"generated real shape, {cfg['real_hours']:g} h", path, meta))
        return {"inputs": inputs}

    def _real_input(self, label: str, path: Path, meta: dict) -> dict:
        """The reference (best of ``real_reference_runs``), then ``real_runs`` osintd replays, each a fresh
        daemon; the median replay is reported, every run's time beside it."""
        result: dict[str, Any] = {"input": label, "file": {"path": str(path), **meta}}
        try:
            result["reference"] = reference = parse_reference(path, self.cfg["real_reference_runs"])
            log(f"real {label}: reference (one Python process: gunzip + orjson.loads per line) best of "
                f"{len(reference['runs_seconds'])}: {reference['seconds']:.3f} s "
                f"({', '.join(f'{x:.3f}' for x in reference['runs_seconds'])}) for {reference['lines']:,} lines "
                f"→ {reference['lines_per_second']:,.0f} lines/s (other processes' CPU "
                f"{', '.join(f'{x:.0f}%' for x in reference['other_cpu_percent'])})")
            runs = []
            for number in range(1, self.cfg["real_runs"] + 1):
                run = self._real_replay(label, path, reference["lines"], number)
                runs.append(run)
                self._real_log(label, run, reference, number)
        except Exception as exc:  # noqa: BLE001 - one input failing still reports the other
            note = f"real {label}: failed: {exc}"
            self.problems.append(note)
            log("PROBLEM: " + note)
            result["error"] = str(exc)
            return result
        # The median by replay time; a run the time cap ended sorts as the slowest.
        ordered = sorted(runs, key=lambda r: (not r["finished"], r.get("replay_seconds") or 0.0))
        result["osintd"] = run = ordered[len(ordered) // 2]
        result["osintd_runs_seconds"] = seconds = [r.get("replay_seconds") or 0.0 for r in runs]
        if run.get("replay_seconds"):
            result["ratio"] = run["replay_seconds"] / reference["seconds"]
        if len(runs) > 1:
            ratio = result.get("ratio")
            log(f"real {label}: median of {len(runs)} replays {run.get('replay_seconds') or 0:.2f} s "
                f"({', '.join(f'{x:.2f}' for x in seconds)}) → ratio "
                f"{f'{ratio:.2f}×' if ratio else '—'} (target ≤ 2.00×)")
        return result

    def _real_log(self, label: str, run: dict, reference: dict, number: int) -> None:
        ratio = run["replay_seconds"] / reference["seconds"] if run.get("replay_seconds") else None
        bound = "" if run["finished"] else " (at least: the time cap ended it)"
        end = (f" (all scored after {run.get('accounted_seconds') or 0:.2f} s, then the pipeline drained)"
               if run["finished"] else " (time cap reached: not finished)")
        log(f"real {label}, replay {number}: osintd start-up {run['startup_seconds']:.2f} s, first event "
            f"{run.get('first_event_after_ready_seconds') or 0:.2f} s later; "
            f"{run['lines_accounted']:,} of {reference['lines']:,} lines accounted for in "
            f"{run.get('replay_seconds') or 0:.2f} s from the first ingested event{end} → "
            f"{run.get('lines_per_second') or 0:,.0f} lines/s; ratio "
            f"{f'{ratio:.2f}×' if ratio else '—'}{bound} (target ≤ 2.00×); {run['ingested']:,.0f} ingested, "
            f"{run['duplicates']:,.0f} duplicates, {run.get('skipped_unknown_types') or 0:,} unknown types, "
            f"{run.get('unusable') or 0:,} unusable; peak RSS {run['peak_rss_kb'] / 1024:.0f} MiB "
            f"(reader process {run['reader_peak_rss_kb'] / 1024:.0f} MiB); CPU daemon "
            f"{run['daemon_cpu_seconds']:.1f} s, reader {run['reader_cpu_seconds']:.1f} s, polling "
            f"{run['poller_cpu_percent']:.0f}%; other processes' CPU {run['other_cpu_percent']:.0f}%")

    def _real_replay(self, label: str, path: Path, lines: int, number: int = 1) -> dict:
        """One ``osintd --replay FILE --replay-speed max``, timed from the first ingested event to the
        moment every line of the file is accounted for.

        Completion: the replay source logs ``replay of FILE finished: E events from L lines (S
        skipped, U unusable, F dated far from the others)`` once its reader has read the whole
        file and every event is handed to the pipeline; the replay is complete when /metrics counts all E
        (``osintd_events_ingested_total`` summed + ``osintd_events_duplicate_total``) and the
        pipeline has drained (its queues empty, a ``new_event`` broadcast for every event ingested
        as news).  If that log line never comes (another log format), the replay counts as complete
        when the reader process has exited, the pipeline has drained and the counts have not moved
        for 2 s (the time of their last change)."""
        cfg = self.cfg
        poll = cfg["real_poll"]
        t_spawn = time.monotonic()
        server = Server(self.procs, "osintd", ["--replay", str(path), "--replay-speed", "max",
                                                "--heartbeat-interval", "3600", "--metrics-interval", "3600"],
                        f"osintd-real-{'shared' if 'shared' in label else 'generated'}-{number}")
        t_ready = time.monotonic()
        (busy0, _), daemon_cpu0, self0 = machine_cpu_seconds(), server.cpu(), resource.getrusage(resource.RUSAGE_SELF)
        result: dict[str, Any] = {"cmd": server.cmd, "startup_seconds": t_ready - t_spawn,
                                  "poll_seconds": poll, "finished": False, "completion": None}
        log_path = Path(server.proc.log_path)
        reader_pid: int | None = None
        reader_hwm, reader_cpu = 0, 0.0
        t_first = t_done = None
        first_count, first_poll = 0.0, 0
        t_accounted: float | None = None  # every line counted by the scorer (the pipeline may still be busy)
        last_new_events, drained = -1.0, False
        last = (0.0, 0.0)
        last_change = t_ready
        finished_line: dict | None = None
        scrapes: list[float] = []
        try:
            deadline = t_spawn + cfg["real_max_seconds"]
            while True:
                s0 = time.monotonic()
                totals = metric_totals(server.port)
                now = time.monotonic()
                scrapes.append(now - s0)
                if totals is not None:
                    counts = (totals.get("osintd_events_ingested_total", 0.0),
                              totals.get("osintd_events_duplicate_total", 0.0))
                    if counts != last:
                        last, last_change = counts, now
                    if t_first is None and sum(counts) > 0:
                        t_first, first_count, first_poll = now, sum(counts), len(scrapes)
                    # Drained: nothing waits between the pipeline's stages, and the hub has sent a
                    # new_event for every event scored as news (or sends no more of them).
                    new_events = totals.get('osintd_messages_broadcast_total{type="new_event"}', 0.0)
                    drained = (totals.get("osintd_pipeline_queue_depth", 0.0) == 0
                               and (new_events >= counts[0] - totals.get("osintd_events_backfilled_total", 0.0)
                                    or new_events == last_new_events))
                    last_new_events = new_events
                if reader_pid is None or not Path(f"/proc/{reader_pid}").exists():
                    reader_pid = child_pid(server.pid) or reader_pid
                if reader_pid is not None:
                    reader_hwm = max(reader_hwm, proc_status_kb(reader_pid, "VmHWM") or 0)
                    reader_cpu = max(reader_cpu, cpu_seconds(reader_pid))
                if finished_line is None:
                    finished_line = replay_finished_line(log_path)
                    if finished_line is not None and "error" in finished_line:
                        raise RuntimeError(f"the replay stopped early: {finished_line['error']}")
                if finished_line is not None and sum(last) >= finished_line["events"]:
                    if t_accounted is None:
                        t_accounted = now
                    if drained:
                        t_done, result["completion"] = now, "log line + /metrics counts, pipeline drained"
                        break
                if (finished_line is None and t_first is not None and now - last_change >= 2.0 and drained
                        and reader_pid is not None and not Path(f"/proc/{reader_pid}").exists()):
                    t_done, result["completion"] = last_change, "reader exited, counts still for 2 s"
                    break
                if not server.alive():
                    raise RuntimeError(f"osintd exited with {server.proc.returncode} during the replay:\n"
                                       f"{server.log_tail()}")
                if now >= deadline:
                    break
                time.sleep(max(0.0, poll - (time.monotonic() - s0)))
            result["finished"] = t_done is not None
            (busy1, _), t_now, self1 = machine_cpu_seconds(), time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
            poller_cpu = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
            end = t_done if t_done is not None else t_now
            stat = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
            daemon_cpu = (int(stat[11]) + int(stat[12])) / CLK_TCK
            children_cpu = (int(stat[13]) + int(stat[14])) / CLK_TCK  # the reader, once it has been waited for
            ingested_total, duplicates = last
            log_counts = finished_line or {}
            accounted = int(ingested_total + duplicates + log_counts.get("skipped_unknown_types", 0)
                            + log_counts.get("unusable", 0))
            result.update(
                first_event_after_ready_seconds=(t_first - t_ready) if t_first is not None else None,
                ingested_at_first_poll=first_count,
                replay_seconds=(end - t_first) if t_first is not None else None,
                accounted_seconds=(t_accounted - t_first) if t_first is not None and t_accounted else None,
                wall_seconds_from_spawn=end - t_spawn,
                ingested=ingested_total, duplicates=duplicates, lines_accounted=accounted,
                reader_lines=log_counts.get("lines"), reader_events=log_counts.get("events"),
                skipped_unknown_types=log_counts.get("skipped_unknown_types"), unusable=log_counts.get("unusable"),
                peak_rss_kb=proc_status_kb(server.pid, "VmHWM") or 0, rss_end_kb=server.rss_kb() or 0,
                reader_peak_rss_kb=reader_hwm, daemon_cpu_seconds=daemon_cpu,
                reader_cpu_seconds=max(reader_cpu, children_cpu),
                metrics_scrape_ms_median=1000 * statistics.median(scrapes) if scrapes else None,
                metrics_scrapes=len(scrapes), metrics=metric_totals(server.port),
                # this script reading /metrics, and what else ran from /health answering to now (all
                # cores): noise if not near 0
                poller_cpu_percent=100.0 * poller_cpu / max(t_now - t_ready, 1e-9),
                other_cpu_percent=max(0.0, 100.0 * (busy1 - busy0 - (daemon_cpu - daemon_cpu0) - poller_cpu
                                                    - max(reader_cpu, children_cpu)) / max(t_now - t_ready, 1e-9)))
            if result["replay_seconds"]:
                result["lines_per_second"] = lines / result["replay_seconds"] if result["finished"] else \
                    accounted / result["replay_seconds"]
                result["events_per_second"] = (ingested_total + duplicates) / result["replay_seconds"]
            if first_poll == 1:  # no read saw zero: the first event came before the first read
                note = (f"real {label}: {first_count:,.0f} events were already counted at the first /metrics read; "
                        f"the replay time starts there and leaves out their share")
                self.problems.append(note)
                log("NOTE: " + note)
            if result["finished"] and log_counts and (log_counts["lines"] != lines or accounted != lines):
                note = (f"real {label}: lines do not add up: file {lines:,}, reader {log_counts['lines']:,}, "
                        f"accounted {accounted:,} (ingested + duplicates + unknown types + unusable)")
                self.problems.append(note)
                log("PROBLEM: " + note)
        finally:
            self._finish(server, result, f"real {label}")
        return result

    # -- many idle clients through heartbeats

    # -- overload: the offered rate ramps past what the server can deliver

    def ramp(self) -> dict:
        """osintd's live demo with a rate that ramps up in steps (``--demo-ramp``), to
        ``ramp_clients`` clients, past what the fan-out can deliver.  Each step is one window:
        delivered new_event per client and second, clients closed (and how), clients told the
        server is overloaded, and what the server says it shed.  The ramp starts with the
        server; ``ramp_lead`` seconds at 5 events/s give the clients time to connect."""
        cfg = self.cfg
        steps = [(5.0, cfg["ramp_lead"])] + [tuple(step) for step in cfg["ramp_steps"]]
        t_start = time.monotonic()
        server = Server(self.procs, "osintd",
                        osintd_args(steps[-1][0], cfg["client_queue"])
                        + ["--demo-ramp", ",".join(f"{rate:g}:{seconds:g}" for rate, seconds in steps)],
                        "osintd-ramp")
        total = sum(seconds for _, seconds in steps)
        result: dict[str, Any] = {"server": "osintd", "clients": cfg["ramp_clients"], "cmd": server.cmd,
                                  "steps": []}
        lg = None
        try:
            lg, info = self._connect(server, cfg["ramp_clients"], total)
            result["connect"] = _connect_summary(info)
            late = time.monotonic() - t_start - cfg["ramp_lead"]
            if late > 0:
                self.problems.append(f"ramp: clients connected {late:.1f} s after the lead-in ended")
            offset = cfg["ramp_lead"]
            for rate, seconds in steps[1:]:
                time.sleep(max(0.0, t_start + offset - time.monotonic()))
                cpu0 = server.cpu()
                lg.start()
                time.sleep(max(0.0, t_start + offset + seconds - time.monotonic()))
                st = lg.stop()
                cpu1 = server.cpu()
                stats = server.stats()
                step = {"offered_per_second": rate, "seconds": st["seconds"], "open": st["open"],
                        "new_event_per_second": st["new_event_per_second"],
                        "new_event_per_client_second": st["new_event_per_second"] / max(st["open"], 1),
                        "closed_in_window": st["closed_in_window"], "close_codes": st["close_codes_in_window"],
                        "warnings": st["warnings"], "clients_warned": st["clients_warned"],
                        "server_cpu_percent": 100 * (cpu1 - cpu0) / max(st["seconds"], 1e-9),
                        "shed_by_type": stats.get("shed_by_type"), "overloaded": stats.get("overloaded"),
                        "at_capacity": stats.get("at_capacity"), "shed_cpu": stats.get("shed_cpu"),
                        "shed_fraction": stats.get("shed_fraction"), "loop_late_ms": stats.get("loop_late_ms"),
                        "slow_consumers_dropped": stats.get("slow_consumers_dropped")}
                result["steps"].append(step)
                log(f"ramp {rate:>6g} events/s offered: {step['new_event_per_client_second']:7.1f} new_event/s per "
                    f"client, {st['open']} open, {st['closed_in_window']} closed {st['close_codes_in_window']}, "
                    f"{st['clients_warned']} warned, shed so far {stats.get('shed_by_type')} (now "
                    f"{stats.get('shed_fraction')} of new_event, loop {stats.get('loop_late_ms')} ms late), "
                    f"server CPU {step['server_cpu_percent']:.0f}%")
                offset += seconds
            last = result["steps"][-1] if result["steps"] else {}
            result.update(clients_dropped=cfg["ramp_clients"] - last.get("open", 0),
                          clients_warned=max((s["clients_warned"] for s in result["steps"]), default=0),
                          shed_by_type=last.get("shed_by_type"), rss_kb=server.rss_kb())
        finally:
            if lg:
                lg.close()
            self._finish(server, result, "ramp")
        return result

    def hold(self, kind: str) -> dict:
        cfg = self.cfg
        clients, hb = cfg["hold_clients"], cfg["hold_heartbeat"]
        server = self._server(kind, f"hold{clients}", osintd_args(0.1, cfg["client_queue"], heartbeat=hb),
                              reference_args(0, cfg["reference_high_water"], heartbeat=hb))
        result: dict[str, Any] = {"server": kind, "clients": clients, "heartbeat_interval": hb, "cmd": server.cmd}
        lg = None
        try:
            rss0 = server.rss_settled_kb(3, 0.2)
            lg, info = self._connect(server, clients, cfg["hold_seconds"] + 30)
            result["connect"] = _connect_summary(info)
            lg.start()
            time.sleep(cfg["hold_seconds"])
            st = lg.stop()
            result.update(
                held_seconds=st["seconds"], open_at_end=st["open"], closed_total=st["closed_total"],
                close_codes_in_window=st["close_codes_in_window"],
                clients_with_2_heartbeats=st["clients_with_2_heartbeats"],
                min_heartbeats_per_client=st["min_heartbeats_per_client"], heartbeats=st["heartbeats"],
                rss0_kb=rss0, rss_kb=server.rss_kb(), server_stats=server.stats(),
                generator_cpu_percent_total=100.0 * st["worker_cpu_seconds"] / st["seconds"])
            result["ok"] = (info["connected"] == clients and st["open"] == clients
                            and st["clients_with_2_heartbeats"] == clients and st["closed_total"] == 0)
        finally:
            if lg:
                lg.close()
            self._finish(server, result, f"hold {clients} clients")
        log(f"hold {clients:,} clients {kind:9}: connected {result['connect']['connected']:,} in "
            f"{result['connect']['seconds']:.1f} s, {result['clients_with_2_heartbeats']:,} got ≥2 heartbeats, "
            f"{result['closed_total']} dropped, RSS {result['rss_kb'] / 1024:.0f} MiB")
        return result

    # -- cluster (issue 16): the Redis hop's latency, and the fan-out of two edge nodes against one

    def _node(self, redis: RedisProc, rate: float, name: str, role: str) -> Server:
        """An osintd node of the cluster ``bench`` in ``redis``, once it has ``role``."""
        server = Server(self.procs, "osintd", [*osintd_args(rate, self.cfg["client_queue"]), "--redis", redis.url,
                                               "--cluster", "bench"], f"osintd-{name}")
        try:
            wait_for_role(server, role)
        except RuntimeError:
            self.procs.stop(server.proc)
            raise
        return server

    def _finish_all(self, nodes: list[Server], redis: RedisProc | None, result: dict, what: str) -> None:
        exits = []
        for node in reversed(nodes):  # followers first: a stopping leader is not replaced meanwhile
            end: dict = {}
            self._finish(node, end, what)
            exits.append(end["server_exit"])
        result["server_exit"] = exits
        if redis is not None:
            redis.stop()

    def hop(self, mode: str, number: int) -> dict:
        """The latency row's load (``cfg["hop"]``) on one node ``alone``; on one node with a state
        file (``state``: the same write-ahead rule as a leader's, on SQLite); on one node with --redis
        (``leader``: its clients see a frame once the leader has stored it in Redis); on a
        ``follower`` of a leader that has no clients (stored, then read from the stream)."""
        cfg = self.cfg
        clients, rate = cfg["hop"]
        result: dict[str, Any] = {"server": mode, "clients": clients, "rate": rate, "run": number}
        redis: RedisProc | None = None
        nodes: list[Server] = []
        lg = None
        try:
            if mode in ("alone", "state"):
                state = ["--state-dir", tempfile.mkdtemp(prefix="state-", dir=self.logdir)] if mode == "state" else []
                nodes.append(Server(self.procs, "osintd", [*osintd_args(rate, cfg["client_queue"]), *state],
                                    f"osintd-hop-{mode}"))
            else:
                redis = RedisProc(self.procs, f"redis-hop-{mode}")
                nodes.append(self._node(redis, rate, f"hop-{mode}-leader", "leader"))
                if mode == "follower":
                    nodes.append(self._node(redis, rate, "hop-follower", "follower"))
            target = nodes[-1]
            result["cmd"] = target.cmd
            also = {f"node{i}": n.pid for i, n in enumerate(nodes) if n is not target}
            if redis is not None:
                also["redis"] = redis.pid
            lg, info = self._connect(target, clients, cfg["lat_warmup"] + cfg["lat_window"])
            result["connect"] = _connect_summary(info)
            st, result["window"] = self._window(target, lg, cfg["lat_warmup"], cfg["lat_window"], also)
            result["server_stats"] = target.stats()
            _note_closes(self, f"osintd ({mode})", f"hop {clients}", st)
        finally:
            if lg:
                lg.close()
            self._finish_all(nodes, redis, result, f"hop {mode}")
        lat = result["window"]["latency_ms"]
        log(f"hop {clients:,} clients @ {rate:g}/s on {mode:8} (run {number}): p50 {lat['p50']:.2f} ms  "
            f"p99 {lat['p99']:.2f} ms  ({lat['count']:,} samples, other processes' CPU "
            f"{result['window']['other_cpu_percent']:.0f}%)")
        return result

    def edges(self, n_edges: int, number: int) -> dict:
        """A leader with no clients offering ``edge_rate`` events/s; ``edge_clients`` clients
        spread over ``n_edges`` followers; delivered new_event/s as at saturation."""
        cfg = self.cfg
        clients, rate = cfg["edge_clients"], cfg["edge_rate"]
        result: dict[str, Any] = {"server": f"{n_edges} edge{'s' if n_edges > 1 else ''}", "edges": n_edges,
                                  "clients": clients, "rate": rate, "run": number}
        redis: RedisProc | None = None
        nodes: list[Server] = []
        lg = None
        try:
            redis = RedisProc(self.procs, f"redis-edges{n_edges}")
            nodes.append(self._node(redis, rate, f"edges{n_edges}-leader", "leader"))
            for i in range(n_edges):
                nodes.append(self._node(redis, rate, f"edges{n_edges}-edge{i + 1}", "follower"))
            edge_nodes = nodes[1:]
            result["cmd"] = nodes[0].cmd
            also = {"leader": nodes[0].pid, "redis": redis.pid,
                    **{f"edge{i + 1}": n.pid for i, n in enumerate(edge_nodes[1:], start=1)}}
            lg, info = self._connect(edge_nodes[0], clients, cfg["sat_warmup"] + cfg["sat_window"],
                                     url=",".join(n.url for n in edge_nodes))
            result["connect"] = _connect_summary(info)
            st, result["window"] = self._window(edge_nodes[0], lg, cfg["sat_warmup"], cfg["sat_window"], also)
            result["edge_stats"] = [n.stats() for n in edge_nodes]
            result["slow_consumers_dropped"] = sum(x.get("slow_consumers_dropped") or 0 for x in result["edge_stats"])
            _note_closes(self, f"osintd ({n_edges} edges)", f"edges {clients}", st)
        finally:
            if lg:
                lg.close()
            self._finish_all(nodes, redis, result, f"edges {n_edges}")
        w = result["window"]
        cpu = {"edge1": w["server_cpu_percent"], **w.get("also_cpu_percent", {})}
        log(f"edges: {clients:,} clients on {n_edges} edge(s), leader at {rate:g} events/s (run {number}): "
            f"{w['new_event_per_second']:,.0f} new_event/s delivered, p50 {w['latency_ms']['p50']:.1f} ms; CPU "
            + ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items())
            + f", generator {w['generator_cpu_percent_total']:.0f}%, softirq {w['interrupt_cpu_percent']:.0f}%, "
            f"other processes {w['other_cpu_percent']:.0f}%")
        return result


def _connect_summary(info: dict) -> dict:
    return {"connected": info["connected"], "failed": info["failed"], "retries": info["retries"],
            "errors": info["errors"], "seconds": info["connect_seconds"]}


def _note_closes(bench: Bench, kind: str, what: str, st: dict) -> None:
    if st["closed_total"]:
        note = (f"{kind} {what}: {st['closed_total']} of the load generator's clients were closed by the server "
                f"(codes in window: {st['close_codes_in_window']}), {st['open']} still open")
        bench.problems.append(note)
        log("NOTE: " + note)


def slow_client(port: int, rcvbuf: int) -> socket.socket:
    """A client that completes the WebSocket handshake and then never reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 4096:
        chunk = s.recv(1)  # byte by byte: read the response head and not one byte more
        if not chunk:
            raise RuntimeError("slow client: connection closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"slow client: handshake refused: {head[:200]!r}")
    return s


def drain_slow(socks: list[socket.socket], timeout: float) -> list[dict]:
    """Read what each slow client was sent; a client the server dropped ends in EOF or a reset."""
    states = {id(s): {"state": "open", "bytes_buffered": 0} for s in socks}
    pending = list(socks)
    for s in socks:
        s.setblocking(False)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for s in list(pending):
            try:
                for _ in range(1000):
                    data = s.recv(1 << 20)
                    if not data:
                        states[id(s)]["state"] = "closed"
                        pending.remove(s)
                        break
                    states[id(s)]["bytes_buffered"] += len(data)
            except BlockingIOError:
                pass
            except OSError as exc:
                states[id(s)]["state"] = f"reset ({exc.__class__.__name__})"
                pending.remove(s)
        time.sleep(0.02)
    return [states[id(s)] for s in socks]


def ingested(port: int) -> float:
    try:
        text = http_text(port, "/metrics")
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("osintd_events_ingested_total{"))


def gharchive_file(events: int, span: float, repos: int) -> tuple[Path, dict]:
    """The generated GH Archive file, cached in the temp directory across runs."""
    digest = hashlib.sha256((HERE / "gharchive.py").read_bytes()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"osintd-bench-gharchive-{events}-{span:g}-{repos}-{digest}.json"
    meta_path = path.with_suffix(".meta.json")
    if not (path.exists() and meta_path.exists()):
        log(f"generating {path} ({events:,} events)")
        tmp = path.with_suffix(".tmp")
        meta = gharchive.write(tmp, events, seed=1, span=span, repos=repos)
        tmp.rename(path)
        meta_path.write_text(json.dumps(meta))
    return path, json.loads(meta_path.read_text())


#: The shared real GH Archive hours (issue 13), beside the repository: ``../shared/real-github``.
SHARED_HOURS_DIR = ROOT.parent / "shared" / "real-github" / "gharchive"
SHARED_HOURS = ("2015-01-01-0.json.gz", "2015-01-01-12.json.gz")  # in time order

#: The reference: one Python process gunzips the file and parses every line (split on b"\n" only:
#: real lines can hold U+2028 inside strings).  It times itself, leaving out its interpreter's start.
PARSE_REFERENCE = r"""
import gzip, json, sys, time
import orjson
t0 = time.perf_counter()
lines = size = 0
rest = b""
with gzip.open(sys.argv[1], "rb") as f:
    while block := f.read(1 << 20):
        size += len(block)
        parts = (rest + block).split(b"\n")
        rest = parts.pop()
        for line in parts:
            if line:
                orjson.loads(line)
                lines += 1
if rest.strip():
    orjson.loads(rest)
    lines += 1
print(json.dumps({"seconds": time.perf_counter() - t0, "lines": lines, "bytes": size}))
"""


def shared_real_hours() -> tuple[Path, dict] | None:
    """The shared real hours as one file for ``--replay`` (it takes one): the two .gz files one after
    the other, in time order; a gzip file may hold several members, and osintd's reader (Python's gzip)
    and the reference read them all.  None if the shared data is not there."""
    sources = [SHARED_HOURS_DIR / name for name in SHARED_HOURS]
    if not all(p.is_file() for p in sources):
        return None
    path = Path(tempfile.gettempdir()) / "osintd-bench-real-2015-01-01-0+12.json.gz"
    data = b"".join(p.read_bytes() for p in sources)
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    return path, {"sources": [str(p) for p in sources], "gz_bytes": len(data)}


def realshape_file(hours: float, per_hour: int, seed: int) -> tuple[Path, dict]:
    """The generated file of real shape, cached in the temp directory across runs."""
    digest = hashlib.sha256((HERE / "realshape.py").read_bytes()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"osintd-bench-realshape-{hours:g}h-{per_hour}-{seed}-{digest}.json.gz"
    meta_path = path.with_suffix(".meta.json")
    if not (path.exists() and meta_path.exists()):
        log(f"generating {path} ({hours:g} hours of {per_hour:,} events)")
        tmp = path.with_suffix(".tmp")
        meta = realshape.write(tmp, hours=hours, per_hour=per_hour, seed=seed)
        tmp.rename(path)
        meta_path.write_text(json.dumps(meta))
    return path, json.loads(meta_path.read_text())


def parse_reference(path: Path, runs: int) -> dict:
    """The best of ``runs`` fresh processes, each timing its gunzip + parse of the whole file."""
    times, others, out = [], [], {}
    for _ in range(runs):
        (busy0, _), t0 = machine_cpu_seconds(), time.monotonic()
        child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, "-c", PARSE_REFERENCE, str(path)], capture_output=True, text=True,
                              timeout=600, cwd=ROOT, check=True)
        child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        (busy1, _), t1 = machine_cpu_seconds(), time.monotonic()
        out = json.loads(done.stdout)
        times.append(out["seconds"])
        child_cpu = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
        others.append(max(0.0, 100.0 * (busy1 - busy0 - child_cpu) / (t1 - t0)))
    best = min(times)
    return {"seconds": best, "runs_seconds": times, "lines": out["lines"], "bytes": out["bytes"],
            "lines_per_second": out["lines"] / best,
            # what else ran meanwhile (all cores together, this script included): noise if not near 0
            "other_cpu_percent": others}


def metric_totals(port: int) -> dict[str, float] | None:
    """Every sample of /metrics summed by metric name (labels added up), and each labelled sample
    under its own name with labels; None if /metrics did not answer."""
    try:
        text = http_text(port, "/metrics")
    except OSError:
        return None
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        name = sample.split("{", 1)[0]
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
            if name != sample:
                totals[sample] = float(value)
        except ValueError:
            pass
    return totals


_REPLAY_DONE = re.compile(r"replay of .* finished: (\d+) events from (\d+) lines "
                          r"\((\d+) skipped, (\d+) unusable, (\d+) dated far from the others\)")
_REPLAY_FAILED = re.compile(r"replay stopped early, after .*|the replay reader ended without finishing.*")


def replay_finished_line(log_path: Path) -> dict | None:
    """What osintd's replay source logs when its reader has read the whole file (None: not yet)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    found = _REPLAY_DONE.search(text)
    if found:
        events, lines, unknown, unusable, out_of_span = map(int, found.groups())
        return {"events": events - out_of_span, "lines": lines, "skipped_unknown_types": unknown,
                "unusable": unusable + out_of_span}
    failed = _REPLAY_FAILED.search(text)
    return {"error": failed.group(0)} if failed else None


def child_pid(pid: int) -> int | None:
    """The first child of ``pid`` (osintd's replay reader process).  Any of its threads may have started
    it (trio starts processes from a worker thread), so every thread's children are looked at."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        if children:
            return int(children[0])
    return None


# ----------------------------------------------------------------------- report


def machine() -> dict:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = proc_meminfo_gib()
    versions = {}
    for module in ("websockets", "trio", "trio_websocket", "wsproto"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - a missing or odd module is just reported
            from importlib.metadata import version
            try:
                versions[module] = version(module.replace("_", "-"))
            except Exception:  # noqa: BLE001
                versions[module] = "?"
    try:
        versions["ws (npm)"] = json.loads((HERE / "node_modules/ws/package.json").read_text())["version"]
    except OSError:
        versions["ws (npm)"] = "?"
    dirty = run(["git", "status", "--porcelain", "--", "osintd"])
    return {
        "nproc": run(["nproc"]), "cpu": cpu, "memory_gib": mem, "kernel": platform.release(),
        "python": platform.python_version(), "node": run(["node", "--version"]), **versions,
        "osintd_commit": run(["git", "rev-parse", "--short", "HEAD"]) + (" + uncommitted changes" if dirty else ""),
        "loadavg_start": os.getloadavg(),
    }


def proc_meminfo_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def build_table(results: dict, cfg: dict) -> tuple[str, list[dict]]:
    rows: list[dict] = []

    def row(label: str, o: Any, r: Any, ratio: str, o_text: str | None = None, r_text: str | None = None) -> None:
        rows.append({"measure": label, "osintd": o, "reference": r, "ratio": ratio,
                     "osintd_text": o_text if o_text is not None else _n(o),
                     "reference_text": r_text if r_text is not None else _n(r)})

    by = lambda name, **kw: {x["server"]: x for x in results.get(name, [])  # noqa: E731
                             if all(x.get(k) == v for k, v in kw.items())}
    for clients in cfg["sat_clients"]:
        pair = by("saturation", clients=clients)
        o = pair.get("osintd", {}).get("window", {}).get("new_event_per_second")
        r = pair.get("reference", {}).get("window", {}).get("new_event_per_second")
        row(f"delivered new_event/s at saturation, {clients:,} clients", o, r, _ratio(o, r))
    for clients in cfg["sat_clients"]:
        pair = by("saturation", clients=clients)
        o = pair.get("osintd", {}).get("window", {}).get("latency_ms", {}).get("p50")
        r = pair.get("reference", {}).get("window", {}).get("latency_ms", {}).get("p50")
        row(f"latency p50 at saturation, {clients:,} clients (ms)", o, r, _ratio(o, r), _n(o, 1), _n(r, 1))
    for clients, rate in cfg["lat"]:
        pair = by("latency", clients=clients)
        for q in ("p50", "p99"):
            o = pair.get("osintd", {}).get("window", {}).get("latency_ms", {}).get(q)
            r = pair.get("reference", {}).get("window", {}).get("latency_ms", {}).get(q)
            row(f"latency {q}, {clients:,} clients at {rate:g} msg/s (ms)", o, r, _ratio(o, r),
                _n(o, 2), _n(r, 2))
    pair = by("memory")
    o = pair.get("osintd", {}).get("per_connection_kb")
    r = pair.get("reference", {}).get("per_connection_kb")
    row(f"RSS per idle connection, {cfg['mem_clients']:,} clients (KiB)", o, r, _ratio(o, r), _n(o, 1), _n(r, 1))

    n_slow = max(1, round(cfg["slow_clients"] * cfg["slow_fraction"]))
    base, slow = by("slow", slow_clients=0), by("slow", slow_clients=n_slow)
    p99 = lambda x: x.get("window", {}).get("latency_ms", {}).get("p99")  # noqa: E731
    label = (f"{cfg['slow_clients']:,} clients at {cfg['slow_rate']:g} msg/s, {n_slow} not reading")
    o, r = p99(slow.get("osintd", {})), p99(slow.get("reference", {}))
    row(f"slow clients: fast clients' p99 (ms), {label}", o, r, _ratio(o, r), _n(o, 2), _n(r, 2))
    ob, rb = p99(base.get("osintd", {})), p99(base.get("reference", {}))
    row("slow clients: same p99 without the slow clients (ms)", ob, rb, _ratio(ob, rb), _n(ob, 2), _n(rb, 2))
    oq, rq = (o / ob if o and ob else None), (r / rb if r and rb else None)
    row("slow clients: p99 with / without", oq, rq, _ratio(oq, rq),
        f"{oq:.2f}×" if oq else "—", f"{rq:.2f}×" if rq else "—")
    od, rd = slow.get("osintd", {}).get("slow_dropped"), slow.get("reference", {}).get("slow_dropped")
    oc, rc = slow.get("osintd", {}).get("slow_sockets_closed"), slow.get("reference", {}).get("slow_sockets_closed")
    row(f"slow clients dropped (sockets closed by {cfg['slow_drain']:g} s after the window)", od, rd, "—",
        f"{od}/{n_slow} ({oc}/{n_slow})", f"{rd}/{n_slow} ({rc}/{n_slow})")
    peak = lambda x: (x.get("rss", {}).get("peak_kb") or 0) / 1024 or None  # noqa: E731
    grow = lambda x: ((x.get("rss", {}).get("end_kb", 0) - x.get("rss", {}).get("start_kb", 0)) / 1024)  # noqa: E731
    o, r = peak(slow.get("osintd", {})), peak(slow.get("reference", {}))
    row("slow clients: peak server RSS (MiB; growth over the window)", o, r, _ratio(o, r),
        f"{_n(o, 1)} ({grow(slow.get('osintd', {})):+.1f})", f"{_n(r, 1)} ({grow(slow.get('reference', {})):+.1f})")

    ing = results.get("ingest") or {}
    if ing:
        text = _n(ing.get("events_per_second"))
        runs = ing.get("runs_events_per_second") or []
        if len(runs) > 1:
            text += f" (median of {len(runs)}: {', '.join(_n(r) for r in runs)})"
        if not ing.get("finished"):
            text += f" (only {ing.get('events_ingested', 0):,.0f} of {ing.get('events_expected', 0):,} in " \
                    f"{ing.get('seconds', 0):.0f} s)"
        row(f"ingest events/s ({ing.get('events_expected', 0):,} GH Archive events, --replay-speed max)",
            ing.get("events_per_second"), None, "—", text, "—")
    for x in (results.get("real") or {}).get("inputs", []):
        real_rows(row, x)
    ramp = results.get("ramp") or {}
    if ramp.get("steps"):
        n = ramp["clients"]
        per_step = " → ".join(f"{s['new_event_per_client_second']:.0f}" for s in ramp["steps"])
        offered = " → ".join(f"{s['offered_per_second']:g}" for s in ramp["steps"])
        shed = sum((ramp.get("shed_by_type") or {}).values())
        row(f"overload ramp, {n:,} clients, offered {offered} events/s: new_event/s per client", None, None, "—",
            f"{per_step}; {ramp['clients_dropped']}/{n} dropped, {ramp['clients_warned']}/{n} warned, "
            f"{shed:,} shed", "—")
        rows[-1]["osintd"] = ramp["clients_dropped"]
    pair = by("hold")
    def hold_text(x: dict) -> str:
        if not x or "error" in x:
            return "—"
        return (f"{x.get('clients_with_2_heartbeats', 0):,}/{x['clients']:,} got ≥2 heartbeats, "
                f"{x.get('closed_total', 0)} dropped, {x.get('rss_kb', 0) / 1024:.0f} MiB")
    o, r = pair.get("osintd", {}), pair.get("reference", {})
    row(f"{cfg['hold_clients']:,} idle clients, heartbeat every {cfg['hold_heartbeat']:g} s",
        o.get("ok"), r.get("ok"), "—", hold_text(o), hold_text(r))

    rows = [x for x in rows if x["osintd"] is not None or x["reference"] is not None]  # scenarios not run
    lines = ["| measure | osintd | reference | osintd/reference |", "|---|---:|---:|---:|"]
    for x in rows:
        lines.append(f"| {x['measure']} | {x['osintd_text']} | {x['reference_text']} | {x['ratio']} |")
    return "\n".join(lines), rows


def real_rows(row, x: dict) -> None:
    """The real-data rows: osintd's replay time against one process's gunzip + parse of the same file."""
    label = x["input"]
    lines = (x.get("reference") or {}).get("lines") or x.get("file", {}).get("events")
    what = f"real-data replay, {label}" + (f" ({lines:,} lines)" if lines else "")
    if "skipped" in x or "error" in x or "osintd" not in x:
        text = f"skipped: {x['skipped']}" if "skipped" in x else f"failed: {x.get('error', '?')}"
        row(what, text, None, "—", text, "—")  # a value, so that the row is shown
        return
    ref, run = x["reference"], x["osintd"]
    o, r = run.get("replay_seconds"), ref["seconds"]
    ratio = x.get("ratio")
    o_text = f"{_n(o, 2)} s ({_n(run.get('lines_per_second'))} lines/s)"
    runs = x.get("osintd_runs_seconds") or []
    if len(runs) > 1:
        o_text += f", median of {len(runs)}: {', '.join(f'{s:.2f}' for s in runs)}"
    ratio_text = f"{ratio:.2f}×" if ratio else "—"
    if not run.get("finished"):
        o_text += f" (time cap: {run.get('lines_accounted', 0):,} of {ref['lines']:,} lines)"
        ratio_text = f"> {ratio_text}" if ratio else "—"
    row(f"{what}: seconds, osintd replay from its first event / one process gunzip + parse "
        f"(best of {len(ref['runs_seconds'])}); target ≤ 2.00×",
        o, r, ratio_text, o_text, f"{_n(r, 3)} s ({_n(ref['lines_per_second'])} lines/s)")
    row(f"{what}: osintd start-up, then to the first event; peak RSS (reader process); ingested / "
        f"duplicates / unknown types", run.get("peak_rss_kb"), None, "—",
        f"{run['startup_seconds']:.2f} s, {run.get('first_event_after_ready_seconds') or 0:.2f} s; "
        f"{run['peak_rss_kb'] / 1024:.0f} MiB ({run['reader_peak_rss_kb'] / 1024:.0f} MiB); "
        f"{run['ingested']:,.0f} / {run['duplicates']:,.0f} / {run.get('skipped_unknown_types') or 0:,}", "—")


def cluster_tables(results: dict, cfg: dict) -> str:
    """The cluster rows (issue 16): the Redis hop's latency against one node alone, and two edge
    nodes' fan-out against one; each the median over the runs, every run's value beside it."""
    out: list[str] = []
    hop = [x for x in results.get("cluster_hop", []) if x.get("window")]
    if hop:
        clients, rate = cfg["hop"]
        def median(mode: str, q: str) -> tuple[float | None, list[float]]:
            values = [x["window"]["latency_ms"][q] for x in hop if x["server"] == mode]
            return (statistics.median(values) if values else None), values
        label = {"alone": "one node alone (no Redis, no state file)",
                 "state": "one node alone with `--state-dir` (frames stored in SQLite first)",
                 "leader": "one node with `--redis` (it leads; frames stored in Redis first)",
                 "follower": "a follower (the leader, elsewhere, stores; the follower reads the stream)"}
        out += [f"Redis hop: {clients:,} clients at {rate:g} new_event/s, latency from the leader's stamp "
                f"to arrival (ms), median of {cfg['hop_runs']} run(s)", "",
                "| clients on | p50 | p99 | p50, p99 / alone | p50, p99 / state file | runs (p50 / p99) |",
                "|---|---:|---:|---:|---:|---|"]
        base50, _ = median("alone", "p50")
        base99, _ = median("alone", "p99")
        state50, _ = median("state", "p50")
        state99, _ = median("state", "p99")
        for mode in ("alone", "state", "leader", "follower"):
            p50, runs50 = median(mode, "p50")
            p99, runs99 = median(mode, "p99")
            if p50 is None:
                continue
            runs = ", ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(runs50, runs99))
            out.append(f"| {label[mode]} | {_n(p50, 2)} | {_n(p99, 2)} | {_ratio(p50, base50)}, "
                       f"{_ratio(p99, base99)} | {_ratio(p50, state50)}, {_ratio(p99, state99)} | {runs} |")
    edges = [x for x in results.get("cluster_edges", []) if x.get("window")]
    if edges:
        if out:
            out.append("")
        out += [f"Edge fan-out: {cfg['edge_clients']:,} clients, the leader (no clients) offering "
                f"{cfg['edge_rate']:g} events/s, delivered new_event/s, median of {cfg['edge_runs']} run(s)", "",
                "| clients on | delivered new_event/s | per client | p50 ms | clients dropped | two / one | "
                "runs |", "|---|---:|---:|---:|---:|---:|---|"]
        def pick(n: int) -> tuple[dict | None, list[float]]:
            runs = sorted((x for x in edges if x["edges"] == n), key=lambda x: x["window"]["new_event_per_second"])
            return (runs[len(runs) // 2] if runs else None), [x["window"]["new_event_per_second"] for x in runs]
        one, _ = pick(1)
        for n in (1, 2):
            x, runs = pick(n)
            if x is None:
                continue
            w = x["window"]
            ratio = _ratio(w["new_event_per_second"], one["window"]["new_event_per_second"]) if n == 2 and one \
                else "—"
            split = "one edge" if n == 1 else f"two edges ({x['clients'] // 2:,} + {x['clients'] - x['clients'] // 2:,})"
            out.append(f"| {split} | {w['new_event_per_second']:,.0f} | "
                       f"{w['new_event_per_second'] / max(w['open_at_end'], 1):,.1f} | {_n(w['latency_ms']['p50'], 1)} | "
                       f"{x.get('slow_consumers_dropped', 0)} | {ratio} | {', '.join(f'{r:,.0f}' for r in runs)} |")
    return "\n".join(out)


def details_table(results: dict) -> str:
    lines = ["| run | server | new_event/s | all frames/s | p50 ms | p99 ms | server CPU | generator CPU (sum, max worker) "
             "| softirq CPU | other processes' CPU | connect s | closed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("saturation", "latency", "slow", "cluster_hop", "cluster_edges"):
        for x in results.get(name, []):
            w = x.get("window")
            if not w:
                continue
            if name == "saturation":
                what = f"saturation {x['clients']:,}"
            elif name == "latency":
                what = f"latency {x['clients']:,} @ {x['rate']:g}/s"
            elif name == "cluster_hop":
                what = f"cluster hop {x['clients']:,} @ {x['rate']:g}/s, run {x['run']}"
            elif name == "cluster_edges":
                what = f"cluster edges: {x['clients']:,} clients, leader at {x['rate']:g}/s, run {x['run']}"
            else:
                what = f"slow: {x['fast_clients']:,} fast + {x['slow_clients']} slow @ {x['rate']:g}/s"
            lat = w["latency_ms"]
            also = w.get("also_cpu_percent") or {}
            server_cpu = f"{w['server_cpu_percent']:.0f}%" + (
                f" (+ {', '.join(f'{k} {v:.0f}%' for k, v in also.items())})" if also else "")
            lines.append(f"| {what} | {x['server']} | {w['new_event_per_second']:,.0f} | "
                         f"{w['frames_per_second']:,.0f} | {_n(lat['p50'], 2)} | "
                         f"{_n(lat['p99'], 2)} | {server_cpu} | "
                         f"{w['generator_cpu_percent_total']:.0f}%, {w['generator_cpu_percent_max_worker']:.0f}% | "
                         f"{w['interrupt_cpu_percent']:.0f}% | {w['other_cpu_percent']:.0f}% | "
                         f"{x.get('connect', {}).get('seconds', 0):.1f} | {w['closed_in_window']} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------ main


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description="osintd against a websockets broadcast() reference, same run.")
    parser.add_argument("--quick", action="store_true", help="reduced matrix, about two minutes")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: bench-results.json "
                        "in the temp directory)")
    parser.add_argument("--only", default="saturation,latency,memory,slow,ingest,real,ramp,hold,cluster",
                        help="comma-separated scenarios to run (default: all; cluster = cluster-hop,cluster-edges)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="also record a py-spy flame graph of osintd in every measuring window into DIR "
                             "(pip install py-spy; it costs CPU, so numbers from such a run are not comparable)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    if "cluster" in only:
        only |= {"cluster-hop", "cluster-edges"}

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    if hard < cfg["hold_clients"] + 1000:
        print(f"warning: RLIMIT_NOFILE hard limit {hard} is below what {cfg['hold_clients']:,} clients need",
              file=sys.stderr)
    needs_node = bool(only & {"saturation", "latency", "memory", "slow", "ramp", "hold", "cluster-hop",
                              "cluster-edges"})
    if needs_node and not (HERE / "node_modules/ws").exists():
        print("installing the load generator's ws package (npm ci in tests/bench)", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True)

    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, ROOT)
                                               if sys.executable.startswith(str(ROOT)) else sys.executable,
                                               os.path.relpath(__file__, ROOT) if __file__.startswith(str(ROOT))
                                               else __file__, *sys.argv[1:]])
    info = machine()
    logdir = Path(tempfile.mkdtemp(prefix="osintd-bench-"))
    print(f"command: {command}")
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, Linux {info['kernel']}, "
          f"Python {info['python']}, Node {info['node']}, websockets {info['websockets']}, trio {info['trio']}, "
          f"ws {info['ws (npm)']}; osintd {info['osintd_commit']}; load average {info['loadavg_start']}")
    print(f"logs: {logdir}", flush=True)

    procs = Processes(logdir)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    bench = Bench(cfg, procs, logdir, args.profile)
    results: dict[str, Any] = {}
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    interrupted = False
    try:
        kinds = ("reference", "osintd")
        n_slow = max(1, round(cfg["slow_clients"] * cfg["slow_fraction"]))

        def measure(name: str, ident: dict, fn, *fn_args) -> None:
            """Run one measurement; a failure is recorded and the run goes on. Results are kept as
            they come, so an interrupted run still reports what it measured."""
            try:
                result = fn(*fn_args)
            except Exception as exc:  # noqa: BLE001 - reported in the results and the summary
                note = f"{name} {ident}: failed: {exc}"
                bench.problems.append(note)
                log("PROBLEM: " + note)
                result = {**ident, "error": str(exc)}
            if name in ("ingest", "real", "ramp"):
                results[name] = result
            else:
                results.setdefault(name, []).append(result)

        if "saturation" in only:
            for n in cfg["sat_clients"]:
                for k in kinds:
                    measure("saturation", {"server": k, "clients": n}, bench.saturation, k, n)
        if "latency" in only:
            for n, rate in cfg["lat"]:
                for k in kinds:
                    measure("latency", {"server": k, "clients": n, "rate": rate}, bench.latency, k, n, rate)
        if "memory" in only:
            for k in kinds:
                measure("memory", {"server": k, "clients": cfg["mem_clients"]}, bench.memory, k, cfg["mem_clients"])
        if "slow" in only:
            for with_slow in (False, True):
                for k in kinds:
                    measure("slow", {"server": k, "slow_clients": n_slow if with_slow else 0}, bench.slow, k, with_slow)
        if "ingest" in only:
            measure("ingest", {"server": "osintd"}, bench.ingest)
        if "real" in only:
            measure("real", {"server": "osintd"}, bench.real)
        if "ramp" in only:
            measure("ramp", {"server": "osintd"}, bench.ramp)
        if "hold" in only:
            for k in kinds:
                measure("hold", {"server": k, "clients": cfg["hold_clients"]}, bench.hold, k)
        if only & {"cluster-hop", "cluster-edges"} and shutil.which("redis-server") is None:
            note = "cluster rows skipped: redis-server is not installed (apt-get install redis-server)"
            bench.problems.append(note)
            log("PROBLEM: " + note)
        else:
            if "cluster-hop" in only:  # the three setups in turn, run after run: drift hits all of them
                for number in range(1, cfg["hop_runs"] + 1):
                    for mode in ("alone", "state", "leader", "follower"):
                        measure("cluster_hop", {"server": mode, "run": number}, bench.hop, mode, number)
            if "cluster-edges" in only:
                for number in range(1, cfg["edge_runs"] + 1):
                    for n_edges in (1, 2):
                        measure("cluster_edges", {"server": f"{n_edges} edges", "edges": n_edges, "run": number},
                                bench.edges, n_edges, number)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping everything", file=sys.stderr)
    finally:
        procs.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    info["loadavg_end"] = os.getloadavg()
    try:
        table, rows = build_table(results, cfg)
        details = details_table(results)
        cluster = cluster_tables(results, cfg)
    except Exception as exc:  # noqa: BLE001 - the raw results are still written below
        table, rows, details, cluster = f"(table failed: {exc!r})", [], "", ""
    elapsed = time.monotonic() - STARTED
    out = args.out or Path(tempfile.gettempdir()) / "bench-results.json"
    document = {
        "command": command, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full", "elapsed_seconds": elapsed, "machine": info, "config": cfg,
        "counting": "delivered = new_event messages received by the clients (osintd's other broadcasts are "
                    "counted in frames_per_second only); latency = arrival time minus the message's timestamp",
        "table": rows, "results": results, "problems": bench.problems, "logs": str(logdir),
        "interrupted": interrupted,
    }
    out.write_text(json.dumps(document, indent=2, default=str))
    print()
    print(f"Command: `{command}` ({'quick' if args.quick else 'full'} mode, {elapsed / 60:.1f} min)  ")
    print(f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB; Python {info['python']}, "
          f"Node {info['node']}; websockets {info['websockets']}, trio {info['trio']}, ws {info['ws (npm)']}; "
          f"osintd {info['osintd_commit']}; load average {info['loadavg_start'][0]:.1f} → "
          f"{info['loadavg_end'][0]:.1f}")
    if rows or not cluster:
        print()
        print(table)
    if cluster:
        print()
        print(cluster)
    print()
    print(details)
    if bench.problems:
        print("\nProblems seen:")
        for p in bench.problems:
            print(f"- {p}")
    print(f"\nJSON: {out}\nlogs: {logdir}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
