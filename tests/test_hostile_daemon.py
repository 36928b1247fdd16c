"""Issue 14, findings 2 (its figures), 3 and 5, against a running daemon with a control client connected.

Each test attacks ``python -m osintd`` as a stranger (or a failing disk) would, while a
control client and /health are watched: the control client never goes a second without
a message, /health answers within a second, and the finding's figure is gone.  (Findings
1 and 2 are also in ``test_hostile_subscriptions.py``, finding 4 in ``test_state.py``.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import resource
import sys

import httpx
import pytest
import trio

from conftest import spawn_daemon
from hostile import health_times, watch
from osintd.hub import STORE_GRACE
from test_webhooks import SAMPLES


async def _top(http: httpx.AsyncClient, daemon) -> dict[str, float]:
    rows = (await http.get(f"{daemon.http}/api/v1/repos")).json()["repositories"]
    return {row["repo_full_name"]: row["activity_score"] for row in rows}


async def test_a_webhook_from_9999_does_not_move_now_on_a_running_daemon(tmp_path):
    """Finding 3: one signed push dated 9999 moved "now" to 9999, and the Top 10 became that
    one repository for good."""
    secret = b"finding 3"
    (tmp_path / "secret").write_bytes(secret)
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-rate", "40", "--demo-seed", "3",
                          "--webhook-secret-file", str(tmp_path / "secret"))
    try:
        gaps: list[float] = []
        stop = trio.Event()
        async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=5) as http:
            nursery.start_soon(watch, daemon.url, gaps, stop)
            await trio.sleep(3.0)
            before = await _top(http, daemon)
            push = json.loads((SAMPLES / "webhooks" / "push.branch-created.json").read_text())
            push["head_commit"]["timestamp"] = "9999-12-31T23:59:59Z"
            push["repository"]["pushed_at"] = 253402300799
            raw = json.dumps(push).encode()
            answer = await http.post(f"{daemon.http}/webhooks/github", content=raw, headers={
                "X-GitHub-Event": "push", "X-GitHub-Delivery": "evil-9999",
                "X-Hub-Signature-256": "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()})
            assert answer.status_code == 202
            times = await health_times(http, f"{daemon.http}/api/v1/health", 0.3)
            await trio.sleep(2.0)
            after = await _top(http, daemon)
            metrics = (await http.get(f"{daemon.http}/metrics")).text
            stop.set()
        assert max(gaps) < 1.0, gaps
        assert max(times) < 1.0, times
        # The rankings were not emptied: the repositories ranked before are still there, none
        # decayed (the demo only adds to them), and the 9999 push did not take the Top alone.
        assert len(before) == len(after) == 10
        kept = set(before) & set(after)
        assert len(kept) >= 8, (before, after)
        assert all(after[name] >= 0.9 * before[name] for name in kept), (before, after)
        clamped = re.search(r"^osintd_events_future_clamped_total (\S+)$", metrics, re.M)
        assert clamped and float(clamped.group(1)) >= 1
    finally:
        daemon.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resource.prlimit on another process is Linux's")
async def test_a_full_disk_on_a_running_daemon_is_told_and_loses_nothing(tmp_path):
    """Finding 5: with the disk full, commits failed, clients got only heartbeats, and
    /api/v1/health said "healthy".  Here the daemon's file-size limit is lowered to one byte
    while it runs (every state write fails with EFBIG, as on a full disk), then raised."""
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-rate", "40", "--heartbeat-interval", "0.5",
                          "--state-dir", str(tmp_path / "state"))
    pid = daemon.process.pid
    try:
        gaps: list[float] = []
        seen: list[dict] = []
        stop = trio.Event()
        async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=5) as http:
            nursery.start_soon(watch, daemon.url, gaps, stop, "snapshot=0", seen)
            await trio.sleep(2.0)
            assert any(m["type"] == "new_event" for m in seen)
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))
            full_from = len(seen)
            await trio.sleep(STORE_GRACE + 1.5)
            told = [m for m in seen[full_from:] if m["type"] == "system_status"]
            assert told and told[-1]["components"]["state"] == "down", told
            times = await health_times(http, f"{daemon.http}/health", 0.2, status=503)
            degraded = (await http.get(f"{daemon.http}/api/v1/health")).json()
            assert degraded["components"]["state"] == "down"
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
            recovered_from = len(seen)
            await trio.sleep(3.0)
            times += await health_times(http, f"{daemon.http}/health", 0.2)
            stop.set()
        assert max(gaps) < 1.0, gaps
        assert max(times) < 1.0, times
        after = seen[recovered_from:]
        assert any(m["type"] == "new_event" for m in after)
        recovered = [m for m in after if m["type"] == "system_status"]
        assert recovered and recovered[-1]["components"]["state"] == "operational"
        # Nothing lost: the seq numbers the control client saw run without a gap (heartbeats and
        # system_status are not stamped: they repeat the last seq).
        seqs = [m["seq"] for m in seen if "seq" in m]
        assert seqs == sorted(seqs) and sorted(set(seqs)) == list(range(seqs[0], seqs[-1] + 1))
        metrics = httpx.get(f"{daemon.http}/metrics").text
        failures = re.search(r"^osintd_state_commit_failures_total (\S+)$", metrics, re.M)
        assert failures and float(failures.group(1)) >= 1
    finally:
        daemon.stop()


def _proc_kib(pid: int, field: str) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))


async def _stall(port: int, head: bytes, part: bytes) -> trio.SocketStream | bytes:
    """Send a head and part of its body; the open stream if the server keeps reading, else its answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(head)
        await stream.send_all(part)
    except trio.BrokenResourceError:
        pass  # refused mid-body: the answer is waiting
    with trio.move_on_after(0.2):
        answer = await stream.receive_some(4096)
        await stream.aclose()
        return answer
    return stream


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_stalled_bodies_hold_bounded_descriptors_and_memory(tmp_path):
    """Finding 2's figures: 1,100 stalled bodies exhausted the descriptors (/health
    unreachable) and 20 stalled 20 MiB bodies took 400 MiB.  Now the daemon holds at most
    64 bodies (its descriptors stay bounded, every further one is answered 503 and closed)
    and 100 MiB of them, while a control client and /health go on."""
    from osintd.server import MAX_BUFFERED_BODY_BYTES, MAX_UNFINISHED_BODIES

    (tmp_path / "secret").write_text("s")
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-rate", "40", "--webhook-secret-file", str(tmp_path / "secret"))
    pid = daemon.process.pid
    mib = 1024 * 1024
    try:
        gaps: list[float] = []
        stop = trio.Event()
        async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=5) as http:
            nursery.start_soon(watch, daemon.url, gaps, stop)
            await trio.sleep(1.0)
            files_before = len(os.listdir(f"/proc/{pid}/fd"))
            rss_before = _proc_kib(pid, "VmRSS")
            # 20 bodies of 20 MiB, all but their last byte sent.
            big = (f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nX-GitHub-Event: push\r\n"
                   f"X-Hub-Signature-256: sha256={'0' * 64}\r\nContent-Length: {20 * mib}\r\n\r\n").encode()
            held = [await _stall(daemon.port, big, b" " * (20 * mib - 1)) for _ in range(20)]
            streams = [s for s in held if isinstance(s, trio.SocketStream)]
            refused = [a for a in held if isinstance(a, bytes)]
            assert len(streams) == MAX_BUFFERED_BODY_BYTES // (20 * mib)
            assert all(a.startswith(b"HTTP/1.1 503") for a in refused), refused[:1]
            grown_mib = (_proc_kib(pid, "VmHWM") - rss_before) / 1024
            times = await health_times(http, f"{daemon.http}/health", 0.1, count=3)
            for stream in streams:
                await stream.aclose()
            # 1,100 small stalled bodies: 64 are read, the rest answered and closed.
            small = big.replace(f"Content-Length: {20 * mib}".encode(), b"Content-Length: 1000")
            held = [await _stall(daemon.port, small, b"{") for _ in range(1_100)]
            streams = [s for s in held if isinstance(s, trio.SocketStream)]
            assert len(streams) == MAX_UNFINISHED_BODIES
            assert all(a.startswith(b"HTTP/1.1 503") for a in held if isinstance(a, bytes))
            files_held = len(os.listdir(f"/proc/{pid}/fd"))
            times += await health_times(http, f"{daemon.http}/health", 0.1, count=3)
            for stream in streams:
                await stream.aclose()
            await trio.sleep(1.0)
            stop.set()
        assert max(gaps) < 1.0, gaps
        assert max(times) < 1.0, times
        assert grown_mib < 100 + 30, grown_mib  # the budget, plus the frames and buffers around it
        assert files_held - files_before <= MAX_UNFINISHED_BODIES + 8, (files_before, files_held)
        print(f"20 x 20 MiB stalled: RSS +{grown_mib:.0f} MiB; 1,100 stalled: {files_held - files_before} more fds")
    finally:
        daemon.stop()
