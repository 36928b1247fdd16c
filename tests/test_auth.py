"""Client access control (``osintd/auth.py``) against a running daemon, on real sockets.

In-process daemons (``start_app``) with a tokens file, a JWT key and a scrape token
read by the same functions the command line uses; clients are trio-websocket and
httpx; the guide's Python client and Chromium run against a daemon started as a
user would.  Every log line of the in-process tests is captured and checked for
every token the test used (``_no_token_in_any_log_line``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
import trio
import trio_websocket

from conftest import ROOT, ScriptedSource, collect_for, make_settings, receive_json, spawn_daemon, start_app, ws_url
from osintd import auth
from osintd.cli import UsageError, settings_from

FULL = "full-7d1c0aa94e3b58f2"
LIMITED = "limited-0b9e61d4c2a7f385"          # new_event of org/a* only
SCRAPE = "scrape-5f0e2b7c91d4a836"
SECRET = b"k" * 16 + b"jwt-secret-for-tests-only-9a8b7c"
TOKENS_FILE = f"""# name   token   limits
full     {FULL}
limited  {LIMITED}  types=new_event  repos=org/a*,nobody/*
"""
#: Every token and JWT a test presents: none may appear in a log line.
PRESENTED: list[str] = [FULL, LIMITED, SCRAPE, SECRET.decode()]


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def access(tmp_path):
    """Settings overrides: the tokens file, the JWT key and the scrape token, read as osintd reads them."""
    return dict(client_tokens=auth.read_tokens_file(_private(tmp_path / "tokens", TOKENS_FILE)),
                jwt_secret=auth.read_jwt_secret(_private(tmp_path / "jwt", SECRET.decode() + "\n")),
                metrics_token=auth.read_metrics_token(_private(tmp_path / "scrape", SCRAPE + "\n")))


@pytest.fixture(autouse=True)
def _no_token_in_any_log_line(caplog):
    caplog.set_level(logging.DEBUG, logger="osintd")
    yield
    # osintd's lines only: the test's own clients (httpx, trio-websocket) log the URLs they open.
    records = [record for phase in ("setup", "call") for record in caplog.get_records(phase)]
    lines = [record.getMessage() + (record.exc_text or "") for record in records if record.name.startswith("osintd")]
    leaked = [(token, line) for line in lines for token in PRESENTED if token in line]
    assert not leaked, leaked


def issue(app, *, secret: bytes = SECRET, lifetime: float = 600, **claims) -> str:
    """A JWT on the app's clock (so it expires in virtual time under autojump)."""
    now = app.clock.now().timestamp()
    token = jwt.encode({"sub": "tester", "exp": int(now + lifetime), **claims}, secret, algorithm="HS256")
    PRESENTED.append(token)
    return token


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {token}".encode())]


async def refused(url: str, headers: list[tuple[bytes, bytes]] | None = None) -> trio_websocket.ConnectionRejected:
    with pytest.raises(trio_websocket.ConnectionRejected) as caught:
        async with trio_websocket.open_websocket_url(url, extra_headers=headers):
            pass
    return caught.value


async def start(nursery, access, **overrides):
    source = ScriptedSource()
    app = await start_app(nursery, make_settings(**access, **overrides), source=source)
    return app, source


def http(app) -> str:
    return f"http://127.0.0.1:{app.port}"


async def test_no_token_a_wrong_one_and_an_expired_jwt_get_401_and_nothing_else(nursery, access, autojump_clock):
    app, _ = await start(nursery, access)
    expired = issue(app, lifetime=-120)                   # past the 30 s leeway
    foreign = issue(app, secret=b"another-key-" * 4)       # signed with another key
    unsigned = jwt.encode({"sub": "x", "exp": 2**40}, "", algorithm="none")
    PRESENTED.append(unsigned)
    no_exp = jwt.encode({"sub": "x"}, SECRET, algorithm="HS256")
    PRESENTED.append(no_exp)
    attempts = {"none": None, "wrong": "wrong-token-123456789", "expired": expired, "foreign": foreign,
                "alg none": unsigned, "no exp": no_exp}
    bodies = set()
    async with httpx.AsyncClient() as client:
        for what, token in attempts.items():
            for url, headers in ((ws_url(app), bearer(token) if token else None),
                                 (ws_url(app, f"token={token}" if token else ""), None)):
                rejection = await refused(url, headers)
                assert rejection.status_code == 401, what
                assert (b"www-authenticate", b'Bearer realm="osintd"') in rejection.headers, what
                bodies.add(rejection.body)
            answer = await client.get(f"{http(app)}/api/v1/repos",
                                      headers={"Authorization": f"Bearer {token}"} if token else {})
            assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer"), what
            bodies.add(answer.content)
        for path in ("/ws/stats", "/api/v1/events", "/api/v1/health", "/api/v1/repos/org/alpha", "/no/such/path"):
            assert (await client.get(f"{http(app)}{path}")).status_code == 401, path
    assert bodies == {b'{"error":"unauthorized","message":"a valid token is required"}'}


async def test_tokens_are_taken_from_the_header_and_from_the_query(nursery, access, autojump_clock):
    app, _ = await start(nursery, access)
    for url, headers in ((ws_url(app), bearer(FULL)), (ws_url(app, f"token={FULL}"), None),
                         (ws_url(app, f"snapshot=0&token={issue(app)}"), None)):
        async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
            assert (await receive_json(ws))["type"] == "connection"
    async with httpx.AsyncClient() as client:
        for path in ("/api/v1/repos", "/api/v1/events", "/api/v1/health", "/ws/stats"):
            answer = await client.get(f"{http(app)}{path}", headers={"Authorization": f"Bearer {FULL}"})
            assert answer.status_code == 200, path


async def _feed(source: ScriptedSource) -> None:
    """Events from five people in four repositories: enough for each to be ranked."""
    for _round in range(3):
        for repo in ("org/alpha", "org/beta", "other/x", "nobody/y"):
            await source.emit(*(source.event(repo) for _ in range(5)))
    await trio.sleep(3)  # scoreboards announce the rankings


async def test_a_limited_static_token_sees_only_its_types_and_repos(nursery, access, autojump_clock):
    app, source = await start(nursery, access)
    async with trio_websocket.open_websocket_url(ws_url(app, f"token={FULL}"), message_queue_size=10_000) as full, \
            trio_websocket.open_websocket_url(ws_url(app, f"token={LIMITED}"), message_queue_size=10_000) as limited:
        await _feed(source)
        everything = await collect_for(full, 2)
        seen = await collect_for(limited, 2)
        assert {m["type"] for m in everything} >= {"new_event", "ranking_change"}
        kinds = {m["type"] for m in seen}
        assert kinds <= {"connection", "snapshot", "new_event", "heartbeat"}, kinds
        await trio.sleep(6)  # a metrics_update, for the snapshots below
        snapshots = {}
        for token in (FULL, LIMITED):
            async with trio_websocket.open_websocket_url(ws_url(app, f"token={token}")) as late:
                await receive_json(late)
                snapshots[token] = await receive_json(late)
        assert snapshots[FULL]["top"] and snapshots[FULL]["metrics"]["total_events"] == 60
        # Rankings and metrics are not the limited token's types: its snapshot has neither.
        assert snapshots[LIMITED]["top"] == [] and snapshots[LIMITED].get("metrics") is None
        mine = [m["event_id"] for m in everything if m["type"] == "new_event" and m["repo_full_name"] in ("org/alpha", "nobody/y")]
        assert [m["event_id"] for m in seen if m["type"] == "new_event"] == mine and len(mine) == 30

        # Asking for more is narrowed, not refused: the answer says what is in force.
        await limited.send_message(json.dumps({"type": "subscribe", "types": ["new_event", "ranking_change"],
                                               "repos": ["*"]}))
        answer = await receive_json(limited)
        assert answer["type"] == "subscribed" and answer["types"] == ["new_event"] and answer["repos"] == ["*"]
        await source.emit(source.event("org/beta"), source.event("org/alpha"), source.event("other/x"))
        later = [m for m in await collect_for(limited, 3) if m["type"] != "heartbeat"]
        assert [(m["type"], m["repo_full_name"]) for m in later] == [("new_event", "org/alpha")]

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {LIMITED}"}) as client:
        events = (await client.get(f"{http(app)}/api/v1/events")).json()["events"]
        assert events and {e["repo_full_name"] for e in events} == {"org/alpha", "nobody/y"}
        assert (await client.get(f"{http(app)}/api/v1/repos")).json()["repositories"] == []
        assert (await client.get(f"{http(app)}/api/v1/repos/org/alpha")).status_code == 404  # no ranking_change
        for path in ("/ws/stats", "/api/v1/health"):  # they list every client and source: no limit narrows them
            assert (await client.get(f"{http(app)}{path}")).status_code == 403


async def test_a_limited_jwt_sees_only_its_types_and_repos(nursery, access, autojump_clock):
    app, source = await start(nursery, access)
    token = issue(app, types=["new_event", "ranking_change"], repos=["other/*"])
    await _feed(source)
    async with trio_websocket.open_websocket_url(ws_url(app), extra_headers=bearer(token),
                                                 message_queue_size=10_000) as ws:
        first = await collect_for(ws, 1)
        snapshot = next(m for m in first if m["type"] == "snapshot")
        assert [row["repo_full_name"] for row in snapshot["top"]] == ["other/x"]
        await _feed(source)
        seen = [m for m in await collect_for(ws, 2) if m["type"] != "heartbeat"]
        assert seen and {m["type"] for m in seen} <= {"new_event", "ranking_change"}
        assert {m["repo_full_name"] for m in seen} == {"other/x"}
        assert sum(m["type"] == "new_event" for m in seen) == 15
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        rows = (await client.get(f"{http(app)}/api/v1/repos")).json()["repositories"]
        assert [row["repo_full_name"] for row in rows] == ["other/x"]
        assert (await client.get(f"{http(app)}/api/v1/repos/other/x")).status_code == 200
        assert (await client.get(f"{http(app)}/api/v1/repos/org/alpha")).status_code == 404
        assert {e["repo_full_name"] for e in (await client.get(f"{http(app)}/api/v1/events")).json()["events"]} \
            == {"other/x"}


async def test_a_jwt_that_expires_mid_session_closes_it_with_1008(nursery, access, autojump_clock):
    app, _ = await start(nursery, access, heartbeat_interval=20.0)
    token = issue(app, lifetime=60)
    started = trio.current_time()
    async with trio_websocket.open_websocket_url(ws_url(app, f"token={token}")) as expiring, \
            trio_websocket.open_websocket_url(ws_url(app, f"token={FULL}")) as static:
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            while True:
                await expiring.get_message()
        assert (closed.value.reason.code, closed.value.reason.reason) == (1008, "token expired")
        assert 60 + auth.JWT_LEEWAY - 1 <= trio.current_time() - started <= 60 + auth.JWT_LEEWAY + 1
        heartbeats = await collect_for(static, 30, "heartbeat")  # a static token never expires
        assert heartbeats
    assert (await refused(ws_url(app, f"token={token}"))).status_code == 401


async def test_metrics_need_the_scrape_token_and_health_stays_open(nursery, access, autojump_clock):
    app, _ = await start(nursery, access)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{http(app)}/metrics")).status_code == 401
        assert (await client.get(f"{http(app)}/metrics", headers={"Authorization": f"Bearer {FULL}"})).status_code == 401
        scraped = await client.get(f"{http(app)}/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
        assert scraped.status_code == 200 and "osintd_" in scraped.text
        assert (await client.get(f"{http(app)}/health")).json()["status"] == "ok"
        page = await client.get(f"{http(app)}/")  # the dashboard's page: code, no data; its requests need the token
        assert page.status_code == 200 and "<form id=\"access\"" in page.text


async def test_with_access_control_and_no_scrape_token_metrics_are_refused_and_the_log_says_so(
        nursery, access, caplog, autojump_clock):
    app, _ = await start(nursery, {**access, "metrics_token": None})
    async with httpx.AsyncClient() as client:
        for token in (None, FULL, SCRAPE):
            answer = await client.get(f"{http(app)}/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
            assert answer.status_code == 401
    assert any(r.levelno == logging.WARNING and "/metrics is refused" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
async def test_no_access_control_on_a_public_address_is_a_loud_warning(nursery, caplog, host, warned, autojump_clock):
    await start_app(nursery, make_settings(host=host), source=ScriptedSource())
    lines = [r for r in caplog.records if r.name == "osintd.auth" and r.levelno == logging.WARNING]
    assert bool(lines) == warned
    if warned:
        assert len(lines) == 1 and "0.0.0.0" in lines[0].getMessage() and "--client-tokens-file" in lines[0].getMessage()


# ---------------------------------------------------------------- the access files


def test_the_tokens_file_is_read_strictly_and_never_echoes_a_token(tmp_path):
    secret = "s3cr3t-value-abcdefgh"
    cases = {
        f"a {secret}\nb {secret}\n": "tokens:2: the token of 'b' is the same as the one on line 1",
        f"a {secret}\na other-value-abcdefghij\n": "tokens:2: the name 'a' is already used on line 1",
        "a short\n": "tokens:1: the token of 'a' is shorter than 16 characters",
        f"a {secret} types=new_event,nope\n": "tokens:1: 'a': unknown types ['nope']",
        f"a {secret} types=new_event types=heartbeat\n": "tokens:1: 'a' has types= twice",
        f"a {secret} second-half-of-it\n": "tokens:1: field 3 of 'a' is not types=T,T or repos=GLOB,GLOB",
        f"a {secret} repos=\n": "tokens:1: 'a' has an empty repos=",
        "a types=new_event,heartbeat\n": "tokens:1: 'a' has no token: its second field is an option",
        "# only a comment\n\n": "holds no tokens",
    }
    for text, message in cases.items():
        with pytest.raises(auth.AccessFileError) as error:
            auth.read_tokens_file(_private(tmp_path / "tokens", text))
        assert message in str(error.value) and secret not in str(error.value) and "second-half" not in str(error.value)
    tokens = auth.read_tokens_file(_private(tmp_path / "tokens", f"  # clients\n\nweb {secret}#x  repos=o/*\n"))
    assert [(t.name, t.types, t.repos) for t in tokens] == [("web", None, ("o/*",))]
    assert secret not in repr(tokens)


def test_access_files_through_the_command_line(tmp_path):
    tokens = _private(tmp_path / "tokens", TOKENS_FILE)
    settings = settings_from(["--client-tokens-file", str(tokens)], {})
    assert [t.name for t in settings.client_tokens] == ["full", "limited"] and FULL not in repr(settings)
    tokens.chmod(0o644)  # readable by every user of the machine
    with pytest.raises(UsageError, match=r"readable by every user \(mode 0644\); run: chmod o-rwx"):
        settings_from(["--client-tokens-file", str(tokens)], {})
    with pytest.raises(UsageError, match="holds 5 bytes; HS256 needs at least 32"):
        settings_from(["--jwt-secret-file", str(_private(tmp_path / "jwt", "short"))], {})
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    _private(credentials / "metrics-token", SCRAPE)
    _private(credentials / "jwt-secret", SECRET.decode())
    settings = settings_from([], {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.metrics_token == SCRAPE and settings.jwt_secret == SECRET and SCRAPE not in repr(settings)
    config = tmp_path / "osintd.toml"
    config.write_text(f'[auth]\nclient_tokens_file = "{tokens}"\n')
    tokens.chmod(0o600)
    assert len(settings_from(["--config", str(config)], {}).client_tokens) == 2


def test_without_token_keeps_a_token_out_of_a_logged_target():
    assert auth.without_token(f"/ws/live-updates?types=new_event&token={FULL}&since=3") == \
        "/ws/live-updates?types=new_event&token=***&since=3"
    assert auth.without_token("/api/v1/repos") == "/api/v1/repos"


# ------------------------------------------------------------ as a user runs it


def test_the_guides_python_client_connects_with_a_token_in_its_url(tmp_path):
    tokens = _private(tmp_path / "tokens", TOKENS_FILE)
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-seed", "5", "--demo-rate", "20", "--heartbeat-interval", "1",
                          "--client-tokens-file", str(tokens))
    try:
        snippet = (ROOT / "tests" / "guide_clients" / "python_websockets.py").read_text()
        results = {}
        for name, token in (("with", FULL), ("without", None)):
            url = daemon.url + (f"?token={token}" if token else "")
            script = tmp_path / f"client_{name}.py"
            script.write_text(snippet.replace("ws://localhost:8000/ws/live-updates", url))
            client = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                out, err = client.communicate(timeout=3)
            except subprocess.TimeoutExpired:
                client.terminate()
                out, err = client.communicate(timeout=5)
            results[name] = (out, err)
        out, _err = results["with"]
        assert "✅ Connected to live updates" in out and "Connected with ID: client_" in out and "📨 New " in out
        out, err = results["without"]
        assert "Connected" not in out and "HTTP 401" in err
    finally:
        daemon.stop()
    log = daemon.log()
    assert "access control on" in log and FULL not in log and LIMITED not in log


def test_the_dashboard_asks_for_a_token_and_keeps_it_for_the_tab(tmp_path):
    from test_dashboard import STATE, Browser, assert_console_clean

    tokens = _private(tmp_path / "tokens", TOKENS_FILE)
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-seed", "3", "--demo-rate", "20", "--heartbeat-interval", "2",
                          "--client-tokens-file", str(tokens))
    browser = Browser(tmp_path)
    form_shown = "!document.getElementById('access').hidden"

    def enter(token: str) -> None:
        browser.eval(f"document.getElementById('access-token').value = {json.dumps(token)}")
        browser.call("click", selector="#access button")

    try:
        browser.call("phase", name="locked")  # the server answers 401 until a token is given: Chromium says so
        browser.call("open", url=f"{daemon.http}/")
        browser.wait(form_shown, "the token form")
        browser.call("screenshot", path=str(tmp_path / "token-form.png"))
        assert browser.state()["connection"] == "locked" and browser.state()["stats"]["snapshots"] == 0
        enter("not-a-token-of-this-server")
        browser.wait(f"{form_shown} && document.getElementById('access-note').textContent.includes('refused')",
                     "the form again, saying the token was refused")
        enter(FULL)
        browser.call("phase", name="in")
        browser.wait(f"{STATE}.live && {STATE}.stats.snapshots >= 1", "the page live with the token")
        # Its fetches carry the token too (the feed is filled from /api/v1/events).
        browser.wait(f"{STATE}.stats.backfilled > 0", "the feed filled from /api/v1/events")
        assert browser.eval("sessionStorage.getItem('osintd.token')") == FULL
        assert browser.eval(form_shown) is False

        # The same tab keeps it: opened again, the page goes live without asking.
        browser.call("open", url=f"{daemon.http}/")
        browser.wait(f"{STATE}.live", "the page live again with the kept token")
        assert browser.eval(form_shown) is False
        console = browser.close()
    finally:
        browser.kill()
        daemon.stop()
    refused = re.compile(r"Failed to load resource: the server responded with a status of 401 \(Unauthorized\)"
                         r"|WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws/live-updates(\?token=[^']*)?' "
                         r"failed: HTTP Authentication failed; no valid credentials available")
    assert_console_clean(console, refused, ("locked",))
    log = daemon.log()
    assert FULL not in log and "not-a-token-of-this-server" not in log


def test_osintd_watch_presents_a_token_from_a_file_or_the_environment(tmp_path):
    """``osintd watch --token-file`` (or ``OSINTD_TOKEN``) sends the token as a Bearer header:
    it is let in; a wrong one is refused with one line and exit 1; the token is never logged."""
    import subprocess
    import sys

    tokens = _private(tmp_path / "tokens", TOKENS_FILE)
    daemon = spawn_daemon(tmp_path, "--demo", "--demo-rate", "20", "--client-tokens-file", str(tokens))
    token_file = _private(tmp_path / "watch-token", FULL + "\n")
    watch = [sys.executable, "-m", "osintd", "watch", "--json", "--types", "new_event", "--url", daemon.url]
    env = {k: v for k, v in os.environ.items() if k != "OSINTD_TOKEN"}
    try:
        for extra, extra_env in ((["--token-file", str(token_file)], {}), ([], {"OSINTD_TOKEN": FULL})):
            process = subprocess.Popen(watch + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                       env={**env, **extra_env})
            try:
                kinds = [json.loads(process.stdout.readline())["type"] for _ in range(3)]
            finally:
                process.terminate()
                process.wait(10)
            assert kinds[0] == "connection" and "new_event" in kinds, (kinds, process.stderr.read())
        refused = subprocess.run(watch, capture_output=True, text=True, timeout=30, cwd=ROOT,
                                 env={**env, "OSINTD_TOKEN": "not-a-token-of-this-server"})
        assert refused.returncode == 1 and "401" in refused.stderr.splitlines()[-1]
        assert "Traceback" not in refused.stderr
    finally:
        daemon.stop()
    assert FULL not in daemon.log() and "not-a-token-of-this-server" not in daemon.log()


def test_refused_tokens_in_a_loop_do_not_flood_the_log(access, caplog, monkeypatch):
    """One line a second at most about refused tokens; the next one counts those left out."""
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    checker = auth.Authenticator(auth.AccessSettings(access["client_tokens"], access["jwt_secret"]), lambda: 0.0)

    def refusal_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "osintd.auth" and "refused" in r.getMessage()]

    for n in range(500):
        assert checker.check(f"not-a-token-of-this-server-{n}") is None
    assert refusal_lines() == ["refused a client token: not one of ours"]
    clock[0] += auth.REFUSAL_LOG_EVERY
    assert checker.check("still-not-a-token-of-this-server") is None
    assert refusal_lines()[-1].endswith("(and 499 more refused since the last such line)")
    assert len(refusal_lines()) == 2
