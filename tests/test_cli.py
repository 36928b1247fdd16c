"""The console script as a user runs it: start-up, bad values, signals."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import trio
import trio_websocket

from conftest import ROOT, spawn_daemon


def run_cli(*args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([sys.executable, "-m", "osintd", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, complaint", [
    (["--port", "99999"], "out of range"),
    (["--port", "http"], "is not a port number"),
    (["--demo-rate", "0"], "out of range"),
    (["--demo-rate", "fast"], "is not events per second"),
    (["--heartbeat-interval", "-1"], "out of range"),
    (["--client-queue", "1"], "out of range"),
    (["--max-clients", "0"], "out of range"),
    (["--allowed-origin", "evil.example"], "is not an origin"),
    (["--public-url", "https://osint.example/dashboard"], "is not a public URL"),
    (["--forwarded-allow-ips", "nginx"], "is not an IP address or network"),
    (["--log-level", "loud"], "invalid choice"),
    (["--demo-ramp", "50:10,fast:5"], "is not events per second"),
    (["--demo-ramp", "50"], "is not RATE:SECONDS"),
    (["--min-people", "0"], "out of range"),
    (["--min-people", "three"], "is not a count of people"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_value_is_one_line_and_exit_2(args, complaint):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("osintd: error:") and complaint in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_demo_mode_env_is_exit_2():
    result = run_cli(env={"DEMO_MODE": "perhaps"})
    assert result.returncode == 2 and "DEMO_MODE" in result.stderr and len(result.stderr.splitlines()) == 1


def test_port_in_use_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port), timeout=20)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"osintd: error: cannot serve on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


def test_help_lists_the_flags():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--demo", "--demo-rate", "--demo-seed", "--heartbeat-interval",
                 "--metrics-interval", "--client-queue", "--max-clients", "--allowed-origin", "--log-level",
                 "--public-url", "--forwarded-allow-ips"):
        assert flag in result.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_console_script_serves_then_stops_with_1001_and_exit_0(tmp_path, sig):
    started = time.monotonic()
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-seed", "1", "--demo-rate", "50")
    startup = time.monotonic() - started
    try:
        async with trio_websocket.open_websocket_url(daemon.url) as ws:
            hello = json.loads(await ws.get_message())
            assert hello["type"] == "connection"
            with trio.fail_after(10):
                while json.loads(await ws.get_message())["type"] != "new_event":
                    pass
            daemon.process.send_signal(sig)
            sent = time.monotonic()
            with trio.fail_after(5):
                try:
                    while True:
                        await ws.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    reason = closed.reason
        status = await trio.to_thread.run_sync(daemon.process.wait, 10)
        elapsed = time.monotonic() - sent
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
    assert (reason.code, reason.reason) == (1001, "server shutting down")
    assert status == 0 and elapsed < 5, daemon.log()
    assert "Traceback" not in daemon.log()
    print(f"start-up to serving: {startup:.2f}s (includes the Python interpreter)")


def test_demo_mode_env_starts_the_demo(tmp_path):
    daemon = spawn_daemon(tmp_path, env={"DEMO_MODE": "true"})
    try:
        assert "sources: demo" in daemon.log()
    finally:
        assert daemon.stop() == 0


# ------------------------------------------------------------- config and secrets

from osintd.cli import UsageError, settings_from  # noqa: E402


def _config(tmp_path, text: str):
    path = tmp_path / "osintd.toml"
    path.write_text(text)
    return path


def test_precedence_flag_then_env_then_file_then_default(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file-token\n")
    config = _config(tmp_path, f"""
        log_level = "warning"
        [server]
        port = 9001
        heartbeat_interval = 12
        min_people = 5
        [github]
        repos = ["file/one"]
        token_file = "{token_file}"
    """.replace("\n        ", "\n"))
    from_file = settings_from(["--config", str(config)], {})
    assert (from_file.port, from_file.heartbeat_interval, from_file.repos, from_file.log_level) == \
        (9001, 12.0, ("file/one",), "warning")
    assert from_file.github_token == "from-file-token" and not from_file.runs_demo
    assert from_file.min_people == 5 and settings_from(["--config", str(config), "--min-people", "1"], {}).min_people == 1
    assert settings_from([], {}).min_people == 3
    env = settings_from(["--config", str(config)], {"GITHUB_TOKEN": "from-env"})
    assert env.github_token == "from-env"
    flags = settings_from(["--config", str(config), "--port", "9002", "--repo", "flag/two"], {"GITHUB_TOKEN": "x"})
    assert (flags.port, flags.repos, flags.heartbeat_interval) == (9002, ("flag/two",), 12.0)
    assert settings_from([], {}).port == 8000 and settings_from([], {}).runs_demo
    assert "from-env" not in repr(env) and "from-file-token" not in repr(from_file)


@pytest.mark.parametrize("text, complaint", [
    ("[server]\nport = \"eighty\"\n", "server.port"),
    ("[servr]\nport = 1\n", "extra fields found (servr)"),
    ("[server]\nport = 70000\n", "out of range"),
    ("[github]\nrepos = [\"not a repo\"]\n", "is not OWNER/NAME"),
    ("[demo]\nenabled = \"yes\"\n", "demo.enabled"),
    ("port = [", "is not valid TOML"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, complaint):
    result = run_cli("--config", str(_config(tmp_path, text)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "config file" in lines[0] and complaint in lines[0], result.stderr


@pytest.mark.parametrize("argv, environ, complaint", [
    (["--github-token-file", "/nonexistent/token", "--repo", "a/b"], {}, "cannot read --github-token-file"),
    (["--demo", "--repo", "a/b"], {}, "cannot be combined"),
    (["--replay", "/nonexistent.json.gz"], {}, "no such file"),
    (["--replay-speed", "fast"], {}, "speed-up factor"),
    (["--org=bad_org!"], {}, "organisation name"),
    (["--github-api-url", "ftp://x"], {}, "http(s) URL"),
    (["--repo", "a/b", "--demo-ramp", "50:10"], {}, "--demo-ramp only applies to the demo"),
])
def test_bad_source_settings(argv, environ, complaint):
    with pytest.raises(UsageError, match=re.escape(complaint)):
        settings_from(argv, environ)


def test_secrets_from_the_credentials_directory(tmp_path):
    (tmp_path / "github-token").write_text("cred-token\n")
    (tmp_path / "webhook-secret").write_text("cred-secret\n")
    settings = settings_from(["--repo", "a/b"], {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.github_token == "cred-token" and settings.webhook_secret == b"cred-secret"
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(UsageError, match="is empty"):
        settings_from(["--github-token-file", str(empty)], {})


def test_the_open_file_limit_is_raised_to_what_max_clients_needs():
    """Issue 14: 1,100 stalled connections exhausted the descriptors under the default soft
    limit (1,024). Run in a child with a low soft limit: raised to --max-clients + spare."""
    import resource

    code = ("import resource; from osintd.cli import raise_open_file_limit, SPARE_FILES; "
            "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)); "
            "print(raise_open_file_limit(2000), resource.getrlimit(resource.RLIMIT_NOFILE)[0], SPARE_FILES)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, cwd=ROOT)
    limit, soft, spare = map(int, result.stdout.split())
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = 2000 + spare if hard == resource.RLIM_INFINITY else min(2000 + spare, hard)
    assert limit == soft == expected
