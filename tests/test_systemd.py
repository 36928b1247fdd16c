"""systemd integration as the service manager would drive it: sd_notify, watchdog,
socket activation, and the unit files themselves; plus /metrics for Prometheus."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import osintd
from osintd.cli import settings_from

from conftest import ROOT, spawn_daemon


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _datagrams(sock: socket.socket, until: float) -> list[tuple[float, str]]:
    found = []
    sock.settimeout(0.05)
    while time.monotonic() < until:
        try:
            found.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            pass
    return found


def test_ready_after_the_port_accepts_then_watchdog_then_stopping(tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    notify.bind(str(path))
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "osintd", "--demo", "--port", str(port)], cwd=ROOT,
        env={**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        notify.settimeout(15)
        first = notify.recv(4096).decode()
        accepting = _accepts(port)  # checked the moment READY arrives
        messages = _datagrams(notify, time.monotonic() + 2.2)
        process.send_signal(signal.SIGTERM)
        after = _datagrams(notify, time.monotonic() + 3)
        status = process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    assert first.splitlines()[0] == "READY=1" and "STATUS=" in first and accepting
    watchdog = [at for at, text in messages if text == "WATCHDOG=1"]
    assert 3 <= len(watchdog) <= 6  # every half of WATCHDOG_USEC (0.5 s) over 2.2 s
    gaps = [b - a for a, b in zip(watchdog, watchdog[1:])]
    assert all(0.3 < gap < 0.8 for gap in gaps), gaps
    assert any(text.startswith("STOPPING=1") for _, text in after) and status == 0


def test_serves_on_a_socket_handed_over_by_systemd(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()

    def as_systemd_would() -> None:  # in the child, before exec: the socket at fd 3, LISTEN_PID = own pid
        os.dup2(fd, 3)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())

    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "osintd", "--demo", "--port", "1"], cwd=ROOT,
                               preexec_fn=as_systemd_would, pass_fds=(3, fd), stdout=log, stderr=log)
    listener.close()  # only the daemon holds it now
    try:
        deadline = time.monotonic() + 15
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            except OSError:
                time.sleep(0.1)
        assert body is not None and b'"ok"' in body
        assert "listening socket(s) from systemd" in (tmp_path / "daemon.log").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def test_metrics_parse_with_prometheus_clients_own_parser(tmp_path):
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-rate", "50")
    try:
        time.sleep(1.5)
        with urllib.request.urlopen(f"{daemon.http}/metrics", timeout=5) as response:
            content_type = response.headers["Content-Type"]
            text = response.read().decode()
    finally:
        assert daemon.stop() == 0
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in ("osintd_websocket_connections", "osintd_messages_broadcast", "osintd_slow_clients_dropped",
                 "osintd_client_queue_depth_max", "osintd_client_queue_depth", "osintd_events_ingested",
                 "osintd_pipeline_lag_seconds", "process_resident_memory_bytes", "process_open_fds",
                 "process_cpu_seconds", "python_info", "osintd_build_info"):
        assert name in families, name
    assert "osintd_client_queue_depth_total" not in text  # a gauge: no counter's suffix
    assert families["osintd_client_queue_depth"].type == "gauge"
    assert families["process_resident_memory_bytes"].samples[0].value > 10 * 2**20
    assert families["process_open_fds"].samples[0].value >= 3
    [build] = families["osintd_build_info"].samples
    assert build.labels == {"version": osintd.__version__, "python": platform.python_version()} and build.value == 1
    ingested = {tuple(sorted(s.labels.items())): s.value for s in families["osintd_events_ingested"].samples
                if s.name.endswith("_total")}
    assert sum(ingested.values()) > 50 and all(dict(k)["source"] == "demo" for k in ingested)
    new_events = [s.value for s in families["osintd_messages_broadcast"].samples
                  if s.labels.get("type") == "new_event" and s.name.endswith("_total")]
    assert new_events and new_events[0] > 50


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (.ci/run installs it)")
def test_unit_files_verify_and_rate_1_5_or_better(tmp_path):
    units = ROOT / "systemd"
    # verify wants ExecStart's binary to exist: point a copy of the units at this venv's osintd.
    osintd = shutil.which("osintd") or str(ROOT / ".venv" / "bin" / "osintd")
    for name in ("osintd.service", "osintd.socket"):
        text = (units / name).read_text().replace("/usr/local/bin/osintd", osintd)
        (tmp_path / name).write_text(text)
    # The optional credentials' drop-in, where verify looks for drop-ins (beside the unit).
    (tmp_path / "osintd.service.d").mkdir()
    shutil.copy(units / "osintd.service.d" / "credentials.conf", tmp_path / "osintd.service.d")
    verify = subprocess.run([SYSTEMD_ANALYZE, "verify", str(tmp_path / "osintd.socket"),
                             str(tmp_path / "osintd.service")], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "credentials.conf" not in verify.stderr, verify.stderr
    security = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager",
                               str(tmp_path / "osintd.service")], capture_output=True, text=True, timeout=60)
    last = [line for line in security.stdout.splitlines() if "Overall exposure level" in line]
    assert last, security.stdout + security.stderr
    score = float(last[0].split("level for osintd.service:")[1].split()[0])
    print(last[0])
    assert score <= 1.5, security.stdout


def test_the_unit_starts_without_credential_files_and_the_drop_in_adds_the_ones_osintd_reads(tmp_path):
    """A LoadCredential= whose file is missing keeps the unit from starting (243/CREDENTIALS),
    and both credentials are optional: the unit loads none, the example drop-in both."""
    unit = (ROOT / "systemd" / "osintd.service").read_text()
    assert not [line for line in unit.splitlines() if line.startswith("LoadCredential")]
    drop_in = (ROOT / "systemd" / "osintd.service.d" / "credentials.conf").read_text().splitlines()
    assert "[Service]" in drop_in
    loaded = {line.split("=", 1)[1].split(":")[0] for line in drop_in if line.startswith("LoadCredential=")}
    assert loaded == {"github-token", "webhook-secret"}  # the names osintd reads from $CREDENTIALS_DIRECTORY
    for name in loaded:  # as systemd would hand them over
        (tmp_path / name).write_text(f"value-of-{name}\n")
    settings = settings_from(["--repo", "a/b"], {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert (settings.github_token, settings.webhook_secret) == ("value-of-github-token", b"value-of-webhook-secret")


def test_journald_lines_have_a_priority_and_no_timestamp_of_their_own(tmp_path):
    daemon = spawn_daemon(tmp_path, "--demo", env={"JOURNAL_STREAM": "8:12345"})
    assert daemon.stop() == 0
    lines = daemon.log().splitlines()
    serving = next(line for line in lines if "serving ws://" in line)
    assert serving.startswith("<6>osintd.app: serving")
    assert all(line.startswith("<") and line[1].isdigit() for line in lines if line.strip()), lines
    plain = spawn_daemon(tmp_path, "--demo")
    assert plain.stop() == 0
    first = plain.log().splitlines()[0]
    assert first[:4].isdigit() and " INFO " in first  # a timestamp and a level off journald


def test_the_host_check_uses_the_socket_systemd_hands_over_not_host(tmp_path):
    """Socket activation on 127.0.0.2 while --host says 0.0.0.0: the Host check answers for
    the socket's address, and not for any IP (the socket is not a wildcard bind)."""
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()

    def as_systemd_would() -> None:
        os.dup2(fd, 3)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())

    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "osintd", "--demo", "--host", "0.0.0.0", "--port", "1"],
                               cwd=ROOT, preexec_fn=as_systemd_would, pass_fds=(3, fd), stdout=log, stderr=log)
    listener.close()

    def status(host: str) -> int | None:
        request = urllib.request.Request(f"http://127.0.0.2:{port}/health", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and status(f"127.0.0.2:{port}") is None:
            time.sleep(0.1)
        assert status(f"127.0.0.2:{port}") == 200
        assert status(f"192.0.2.2:{port}") == 421
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
