"""The ``GET /`` dashboard in a real browser against a real daemon.

Debian's Chromium (``/usr/bin/chromium``) is driven by playwright-core from npm
(``tests/browser``, which never downloads a browser) through a small line
protocol: ``tests/browser/driver.js`` reads one JSON command per line and
answers one JSON line, so the scenario and every assertion live here.  Each
test starts ``osintd --demo`` with :func:`spawn_daemon` and ends it and the
driver by their PIDs.

What the page reports about itself (``window.osintdDashboard``) is checked
against what the server says independently: ``/api/v1/repos`` for the order of
the Top 10, and a plain WebSocket *observer* in a thread for every
``new_event`` broadcast.  A ``MutationObserver`` installed by the test records
every feed row the page ever inserts, so "no event shown twice" is checked on
the DOM, not on the page's word.

* a network blip is a TCP relay (``CuttableProxy``) between page and daemon whose
  connections the test cuts while the daemon runs on: the page must resume with
  ``?since=&epoch=`` and get ``recovered: true``;
* a restart stops the daemon and starts another on the same port (a new epoch,
  and another demo seed, so left-over events of the old run would show);
* what a healthy daemon rarely sends (a snapshot whose board lags behind its
  seq, a repeated frame, a gap, a slow resume answer) comes from
  ``ScriptedServer``, which serves the real page and lets the test write every
  WebSocket message.

The browser's console must stay clean: any error or warning, and any uncaught
page error, fails the test.  The one exception is Chromium's own line
"WebSocket connection to '…' failed" for a reconnect attempt while the test
has deliberately taken the server away (no page script can silence it).

Without Chromium or ``tests/browser/node_modules`` the tests skip, except under
CI (``CI`` set), where they fail: CI must install both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.client import connect
from websockets.sync.server import serve

from conftest import ROOT, Daemon, spawn_daemon
from conftest import missing as absent
from osintd.httpapi import DASHBOARD_HEADERS

BROWSER_DIR = ROOT / "tests" / "browser"
DRIVER = BROWSER_DIR / "driver.js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
DEMO = ("--demo", "--demo-seed", "3", "--demo-rate", "20", "--heartbeat-interval", "2")

STATE = "window.osintdDashboard.state()"
ROWS = "[...document.querySelectorAll('#board tr[data-repo]')]"


def _need_browser() -> str:
    node = shutil.which("node")
    missing = [what for what, ok in (("node", node is not None), (CHROMIUM, Path(CHROMIUM).exists()),
                                     ("tests/browser/node_modules (cd tests/browser && npm ci)",
                                      (BROWSER_DIR / "node_modules" / "playwright-core").is_dir())) if not ok]
    if missing:
        absent("the dashboard tests need " + ", ".join(missing))
    return node


# --------------------------------------------------------------------- the driver


class Browser:
    """``node tests/browser/driver.js`` as a subprocess: one command, one answer."""

    def __init__(self, tmp_path: Path, chromium_args: tuple[str, ...] = ()) -> None:
        node = _need_browser()
        self.stderr_path = tmp_path / "driver.stderr"
        extra = [part for arg in chromium_args for part in ("--browser-arg", arg)]
        self.process = subprocess.Popen(
            [node, str(DRIVER), "--executable", CHROMIUM, "--max-seconds", "110", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_path.open("wb"),
            cwd=BROWSER_DIR, text=True, bufsize=1,
        )
        self._answers: queue.Queue = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def call(self, cmd: str, timeout: float = 20, **fields):
        self._next_id += 1
        request = {"id": self._next_id, "cmd": cmd, **fields}
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pytest.fail(f"the driver is gone (exit {self.process.poll()}):\n{self.stderr()}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no answer from the driver to {cmd} within {timeout} s\n{self.stderr()}")
            if line is None:
                pytest.fail(f"the driver ended (exit {self.process.poll()}) during {cmd}:\n{self.stderr()}")
            answer = json.loads(line)
            if answer.get("id") == self._next_id:
                break
        if not answer["ok"]:
            raise DriverError(f"{cmd} failed: {answer['error']}")
        return answer["result"]

    def eval(self, js: str):
        return self.call("eval", js=js)

    def state(self) -> dict:
        return self.eval(STATE)

    def wait(self, js: str, what: str, timeout: float = 10):
        """Wait until the expression ``js`` is truthy in the page; fail with the page's state if not."""
        try:
            return self.call("wait", timeout=timeout + 10, js=js, ms=int(timeout * 1000))
        except DriverError as error:
            pytest.fail(f"timed out after {timeout} s waiting for {what} ({error})\npage state: "
                        f"{json.dumps(self.state())[:3000]}")

    def close(self) -> list[dict]:
        """The console errors/warnings the driver recorded; the browser is closed."""
        result = self.call("close")
        self.process.wait(timeout=15)
        return result["console"]

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)  # the driver closes Chromium on SIGTERM
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]


class DriverError(Exception):
    pass


@pytest.fixture
def browser(tmp_path):
    started = Browser(tmp_path)
    yield started
    started.kill()


@pytest.fixture
def daemons(tmp_path):
    """Starts daemons for a test and ends every one it started, by PID."""
    started: list[Daemon] = []

    def start(*args: str) -> Daemon:
        daemon = spawn_daemon(tmp_path, *DEMO, *args)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


# --------------------------------------------------------------- independent views


class Observer:
    """A plain WebSocket client in a thread that records every broadcast it receives."""

    def __init__(self, url: str) -> None:
        self.messages: list[dict] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            pytest.fail(f"the observer could not connect to {url}: {self._error!r}")

    def _run(self, url: str) -> None:
        try:
            with connect(url, open_timeout=5, max_size=None) as ws:
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        raw = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    self.messages.append(json.loads(raw))
        except Exception as error:  # noqa: BLE001 - reported by the test, or the end of the server
            self._error = error
            self._ready.set()

    def events(self) -> dict[int, str]:
        """seq -> event_id of every new_event seen."""
        return {m["seq"]: m["event_id"] for m in list(self.messages) if m["type"] == "new_event"}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def observers():
    started: list[Observer] = []

    def start(url: str) -> Observer:
        observer = Observer(url)
        started.append(observer)
        return observer

    yield start
    for observer in started:
        observer.close()


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class CuttableProxy:
    """A TCP relay on 127.0.0.1 whose connections the test can cut, like a network blip.

    While ``blocked``, new connections are accepted and closed at once, so the page's
    reconnect attempts fail until the blip is over; the daemon behind keeps running.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.upstream: int | None = None
        self.blocked = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.blocked.is_set() or self.upstream is None:
                _close(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self.listener.close()
        self._thread.join(timeout=5)


class ScriptedServer:
    """Serves the real dashboard page, but the test writes every WebSocket message itself,
    so it can send what a healthy osintd rarely does: a snapshot whose board lags behind its
    seq, a repeated frame, a gap, a slow resume answer."""

    PAGE = (ROOT / "osintd" / "static" / "dashboard.html").read_bytes()
    CLIENT = (ROOT / "osintd" / "static" / "client.js").read_bytes()  # the page imports it

    def __init__(self) -> None:
        self.links: queue.Queue = queue.Queue()
        self.board: dict = {"repositories": [], "seq": 0}
        self.requests: list[str] = []
        self.server = serve(self._handle, "127.0.0.1", 0, process_request=self._http, compression=None,
                            ping_interval=None)
        self.port = self.server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _http(self, connection, request):
        path = request.path.split("?")[0]
        self.requests.append(request.path)
        if path == "/ws/live-updates":
            return None
        if path == "/":
            body, headers = self.PAGE, [("Content-Type", "text/html; charset=utf-8"), *DASHBOARD_HEADERS]
        elif path == "/client.js":
            body, headers = self.CLIENT, [("Content-Type", "text/javascript")]
        elif path == "/api/v1/repos":
            body, headers = json.dumps(self.board).encode(), [("Content-Type", "application/json")]
        elif path == "/api/v1/events":
            body, headers = b'{"events": []}', [("Content-Type", "application/json")]
        else:
            return Response(404, "Not Found", Headers([("Content-Length", "0")]))
        return Response(200, "OK", Headers([*headers, ("Content-Length", str(len(body)))]), body)

    def _handle(self, connection) -> None:
        link = ScriptedLink(connection)
        self.links.put(link)
        with contextlib.suppress(Exception):
            for message in connection:
                link.received.append(message)
        link.closed.set()

    def next_link(self, timeout: float = 10) -> ScriptedLink:
        try:
            return self.links.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the page did not (re)connect within {timeout} s; requests: {self.requests}")

    def close(self) -> None:
        self.server.shutdown()
        self._thread.join(timeout=5)


class ScriptedLink:
    def __init__(self, connection) -> None:
        self.connection = connection
        self.path = connection.request.path
        self.received: list[str] = []
        self.closed = threading.Event()

    def send(self, type_: str, **fields) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        self.connection.send(json.dumps({"type": type_, "timestamp": now, **fields}))


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# ------------------------------------------------------------------------ helpers

# Records every feed row the page ever inserts (once per DOM node): [epoch, event_id, seq].
WATCH_FEED = """(() => {
  if (window.__shownEvents) return true;
  const shown = window.__shownEvents = [];
  const counted = new WeakSet();
  const feed = document.getElementById('feed');
  const note = (node) => {
    if (!node.dataset || !node.dataset.eventId || counted.has(node)) return;
    counted.add(node);
    shown.push([window.osintdDashboard.state().epoch, node.dataset.eventId, Number(node.dataset.seq)]);
  };
  feed.querySelectorAll('li').forEach(note);
  new MutationObserver((records) => { for (const r of records) r.addedNodes.forEach(note); })
    .observe(feed, { childList: true });
  return true;
})()"""

SHOWN = "window.__shownEvents"
ACCEPTED = "window.osintdDashboard.accepted()"
RENDERED_BOARD = f"""{ROWS}.map((tr) => ({{
  repo: tr.dataset.repo, rank: Number(tr.children[0].textContent),
  score: tr.children[3].textContent, classes: tr.className, move: tr.children[1].textContent }}))"""
FEED = "[...document.querySelectorAll('#feed li')].map((li) => [li.dataset.eventId, Number(li.dataset.seq)])"
STALE_VIEW = """(() => ({
  stale: document.body.classList.contains('stale'),
  tags: [...document.querySelectorAll('.stale-tag')].filter((t) => getComputedStyle(t).display !== 'none').length,
  note: document.getElementById('board-note').textContent,
  rows: document.querySelectorAll('#board tr[data-repo]').length }))()"""


def assert_no_event_shown_twice(shown: list[list]) -> None:
    counts: dict[tuple[str, str], int] = {}
    for epoch, event_id, _seq in shown:
        counts[(epoch, event_id)] = counts.get((epoch, event_id), 0) + 1
    twice = {key: n for key, n in counts.items() if n > 1}
    assert not twice, f"events shown more than once: {list(twice.items())[:10]}"


def wait_observed(observer: Observer, seq: int, timeout: float = 5) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = observer.events()
        if any(s >= seq for s in events) or (observer.messages and observer.messages[-1].get("seq", 0) >= seq):
            return events
        time.sleep(0.05)
    pytest.fail(f"the observer never got to seq {seq}")


def assert_took_exactly(browser: Browser, observer: Observer, epoch: str, after: int) -> int:
    """The page took in every new_event the server broadcast after seq ``after`` (up to its
    own last seq), each once, with the same id: no gap, no duplicate. Answers that last seq."""
    upto = browser.state()["lastSeq"]
    accepted = [a for a in browser.eval(ACCEPTED) if a["epoch"] == epoch and a["via"] == "live"
                and after < a["seq"] <= upto]
    seqs = [a["seq"] for a in accepted]
    assert len(seqs) == len(set(seqs)), f"taken twice: {sorted(s for s in seqs if seqs.count(s) > 1)[:10]}"
    broadcast = {s: e for s, e in wait_observed(observer, upto).items() if after < s <= upto}
    taken = {a["seq"]: a["event_id"] for a in accepted}
    assert len(broadcast) >= 10, f"too few events to judge in ({after}, {upto}]"
    missing = sorted(set(broadcast) - set(taken))
    extra = sorted(set(taken) - set(broadcast))
    wrong = sorted(s for s in set(taken) & set(broadcast) if taken[s] != broadcast[s])
    assert not (missing or extra or wrong), f"missing {missing[:10]}, not broadcast {extra[:10]}, other id {wrong[:10]}"
    return upto


def assert_feed_is_the_newest(browser: Browser, observer: Observer) -> None:
    """The feed on screen is exactly the 50 newest broadcast events up to its newest, in order."""
    feed = [(event_id, seq) for event_id, seq in browser.eval(FEED)]
    assert feed, "the feed is empty"
    newest = feed[0][1]
    broadcast = wait_observed(observer, newest)
    first_observed = min(broadcast)
    assert feed[-1][1] > first_observed, "the feed still shows events from before the observer connected"
    expected = [(broadcast[s], s) for s in sorted((s for s in broadcast if s <= newest), reverse=True)][:50]
    assert feed == expected, f"feed {feed[:5]}… ≠ broadcast {expected[:5]}…"


def assert_console_clean(messages: list[dict], tolerated: re.Pattern | None = None,
                         tolerated_phases: tuple[str, ...] = ()) -> None:
    """No console error/warning and no page error, except Chromium's own failed-reconnect
    line during a phase in which the test took the server away on purpose."""
    bad = [m for m in messages
           if not (tolerated and m["kind"] == "console" and m["phase"] in tolerated_phases
                   and tolerated.fullmatch(m["text"]))]
    assert not bad, "browser console errors/warnings:\n" + "\n".join(
        f"[{m['phase']}] {m['kind']} {m['type']}: {m['text']} {m.get('location', '')}" for m in bad)


def failed_reconnect_line(port: int) -> re.Pattern:
    return re.compile(rf"WebSocket connection to 'ws://127\.0\.0\.1:{port}/ws/live-updates"
                      rf"\?since=\d+&epoch=[0-9a-f]+' failed: .*")


def wait_board_matches_server(browser: Browser, http: str, timeout: float = 8) -> list[str]:
    """The rendered Top 10 order equals the server's /api/v1/repos at some moment."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        server = [row["repo_full_name"] for row in get_json(f"{http}/api/v1/repos")["repositories"]]
        time.sleep(0.3)  # announcements are once a second; renders follow within ~100 ms
        rendered = [row["repo"] for row in browser.eval(RENDERED_BOARD)]
        if rendered == server and len(server) == 10:
            return rendered
        last = (rendered, server)
    pytest.fail(f"the rendered Top 10 never matched /api/v1/repos: rendered {last[0]}, server {last[1]}")


def wait_connection(browser: Browser, state: str, timeout: float = 5) -> None:
    text = {"reconnecting": "reconnecting…", "connected": "connected", "offline": "offline"}[state]
    browser.wait(f"document.getElementById('conn').dataset.state === {json.dumps(state)} && "
                 f"document.getElementById('conn-text').textContent.startsWith({json.dumps(text)})",
                 f"the indicator to say {text}", timeout=timeout)


# -------------------------------------------------------------------------- tests


def test_page_is_self_contained(daemons):
    """GET / is the dashboard, under the strict CSP, and loads nothing from elsewhere."""
    daemon = daemons()
    with urllib.request.urlopen(f"{daemon.http}/", timeout=5) as response:
        page = response.read().decode()
        csp = response.headers["Content-Security-Policy"]
        assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "window.osintdDashboard" in page and 'id="board"' in page and "<canvas" in page
    # Nothing fetched from outside: no src=/href= (other than data:), no @import or url(),
    # no fixed WebSocket address (it is built from location).
    for tag in re.findall(r"<[a-z]+\b[^>]*>", page):
        for attr, value in re.findall(r"\b(src|href)\s*=\s*[\"']([^\"']*)", tag):
            assert value.startswith("data:"), f"{attr}={value!r} in {tag}"
    assert "@import" not in page and "url(" not in page
    assert "ws://localhost" not in page and "127.0.0.1" not in page and "location.host" in page
    # Its connection code is the JavaScript client, imported from this server (CSP 'self').
    assert 'import { LiveUpdatesClient } from "/client.js"' in page and "script-src 'self'" in csp
    with urllib.request.urlopen(f"{daemon.http}/client.js", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert "export class LiveUpdatesClient" in response.read().decode()


def test_dashboard_fills_streams_and_moves(daemons, browser, observers):
    """Leaderboard full at once, events stream without a gap or a repeat, a rank move shows
    and the order stays the server's, renders are batched, a row shows its summary."""
    daemon = daemons()
    observer = observers(daemon.url)
    opened = browser.call("open", url=f"{daemon.http}/")
    assert opened["status"] == 200 and "default-src 'none'" in opened["csp"]
    browser.eval(WATCH_FEED)

    browser.wait(f"{STATE}.live && {ROWS}.length === 10", "10 leaderboard rows from the snapshot", timeout=10)
    wait_connection(browser, "connected")
    state = browser.state()
    assert not browser.eval("document.body.classList.contains('stale')")
    board = browser.eval(RENDERED_BOARD)
    assert [row["rank"] for row in board] == list(range(1, 11))
    assert [row["repo"] for row in board] == [row["repo_full_name"] for row in state["top"]]
    assert all(re.fullmatch(r"\d+\.\d", row["score"]) for row in board), board
    # A newcomer's trend comes from the board the page fetches for it; every row says why.
    browser.wait(f"{ROWS}.every((tr) => /^(HOT|ACTIVE|STABLE|COOLING|QUIET)$/"
                 ".test(tr.querySelector('.badge').textContent))", "a trend on every row", timeout=5)
    browser.wait(f"{ROWS}.every((tr) => /^\\d+ people( · [a-z_]+(, [a-z_]+)*)?$/"
                 ".test(tr.querySelector('.why').textContent))", "people and drivers on every row", timeout=5)

    # Events stream into the feed, newest first, capped.
    first_seq = state["lastSeq"]
    browser.wait(f"window.osintdDashboard.events().filter((e) => e.seq > {first_seq}).length >= 20",
                 "20 live events in the feed")
    feed = browser.eval(FEED)
    assert 20 <= len(feed) <= 50 and len({event_id for event_id, _ in feed}) == len(feed)
    assert [seq for _, seq in feed] == sorted((seq for _, seq in feed), reverse=True)

    # A rank move shows: a highlighted row with its arrow, in its new place.
    moved = browser.wait(f"""(() => {{
        const rows = {ROWS};
        const tr = rows.find((tr) => tr.classList.contains('move-up') || tr.classList.contains('move-down'));
        return tr ? {{ repo: tr.dataset.repo, index: rows.indexOf(tr), rank: Number(tr.children[0].textContent),
                       label: tr.children[1].textContent, up: tr.classList.contains('move-up') }} : null;
      }})()""", "a ranking_change rendered as a moved row", timeout=15)
    assert moved["index"] + 1 == moved["rank"], moved
    assert re.fullmatch(r"[▲▼][1-9]\d*", moved["label"]) and (moved["label"][0] == "▲") == moved["up"], moved
    announced = [m for m in observer.messages if m["type"] == "ranking_change"
                 and m["repo_full_name"] == moved["repo"] and m["change"] == ("up" if moved["up"] else "down")]
    assert announced, f"the server announced no such move of {moved['repo']}"

    # After the moves, the order on screen is still exactly the server's.
    wait_board_matches_server(browser, daemon.http)

    # Renders are batched: at most ~10 a second while dozens of messages arrive.
    before = browser.state()["stats"]
    time.sleep(3)
    after = browser.state()["stats"]
    messages, renders = after["messages"] - before["messages"], after["renders"] - before["renders"]
    assert messages >= 40, (before, after)
    assert renders <= 3 * 11, f"{renders} renders in 3 s for {messages} messages"

    # Metrics counters show the server's numbers; the chart has drawn events.
    browser.wait(f"{STATE}.metrics !== null", "a metrics_update", timeout=8)
    metrics = browser.state()["metrics"]
    keys = ("total_events", "active_repositories", "total_queries", "websocket_connections")
    shown = browser.eval(f"{json.dumps(keys)}.map((k) => document.getElementById('m-' + k).textContent)")
    assert shown == [f"{metrics[k]:,}" for k in keys]
    assert metrics["total_events"] > 1000 and metrics["websocket_connections"] == 2  # the page and the observer
    assert int(browser.eval("document.getElementById('chart').dataset.total")) > 0

    # Selecting a row shows its summary.
    name = browser.eval(f"{ROWS}[0].dataset.repo")
    browser.call("click", selector=f"#board tr[data-repo='{name}']")
    detail = browser.wait(f"""(() => {{ const d = document.getElementById('detail-body');
        return d.dataset.repo === {json.dumps(name)} && d.querySelector('.summary').textContent; }})()""",
                          "the selected repository's summary")
    assert re.fullmatch(r"\w[\w ]* activity with \d+ events from \d+ people in \d+\w+\. Recent focus on .+\.",
                        detail), detail
    assert browser.state()["selected"] == name
    assert browser.eval(f"document.querySelector(\"#board tr[data-repo='{name}']\").classList.contains('selected')")

    # Every live event was taken in once, and the feed on screen is the server's newest 50.
    assert_took_exactly(browser, observer, state["epoch"], first_seq)
    assert_feed_is_the_newest(browser, observer)
    assert_no_event_shown_twice(browser.eval(SHOWN))
    assert browser.state()["stats"]["gaps"] == 0

    ARTIFACTS.mkdir(exist_ok=True)
    browser.call("screenshot", path=str(ARTIFACTS / "dashboard.png"))
    assert_console_clean(browser.close())


def test_dashboard_resumes_after_a_network_blip(daemons, browser, observers):
    """Cut the page's connections while the server runs on: it shows reconnecting…, comes back
    with ?since=&epoch=, gets recovered: true and the missed messages, takes every missed event
    exactly once and shows no event twice."""
    proxy = CuttableProxy()
    try:
        # The page is served through the relay, so its origin is the relay's.
        daemon = daemons("--allowed-origin", f"http://127.0.0.1:{proxy.port}")
        proxy.upstream = daemon.port
        observer = observers(daemon.url)
        browser.call("open", url=f"http://127.0.0.1:{proxy.port}/")
        browser.eval(WATCH_FEED)
        browser.wait(f"{STATE}.live && {ROWS}.length === 10 && window.osintdDashboard.events().length >= 10",
                     "a live page")
        before = browser.state()

        browser.call("phase", name="blip")
        proxy.blocked.set()
        proxy.cut()
        wait_connection(browser, "reconnecting")
        assert browser.eval(STALE_VIEW)["stale"] and not browser.state()["live"]
        time.sleep(0.5)  # events go on meanwhile; the page misses them
        proxy.blocked.clear()

        browser.wait(f"{STATE}.live && {STATE}.stats.resumedRecovered === 1", "recovered: true", timeout=15)
        browser.call("phase", name="after-blip")
        wait_connection(browser, "connected")
        cut_seq = before["lastSeq"]
        browser.wait(f"{STATE}.lastSeq > {cut_seq} + 80", "live data after the resume", timeout=10)
        after = browser.state()
        assert after["epoch"] == before["epoch"] and after["stats"]["epochResets"] == 0
        assert after["stats"]["resumedNotRecovered"] == 0 and after["stats"]["snapshots"] == 1
        assert after["stats"]["gaps"] == 0 and after["stats"]["connects"] >= 2

        assert_took_exactly(browser, observer, before["epoch"], cut_seq)
        assert_no_event_shown_twice(browser.eval(SHOWN))
        browser.wait("window.osintdDashboard.events().length === 50", "a full feed")
        assert_feed_is_the_newest(browser, observer)
        assert_console_clean(browser.close(), failed_reconnect_line(proxy.port), ("blip",))
    finally:
        proxy.close()


def test_dashboard_survives_a_server_restart(daemons, browser, observers):
    """Stop the server: reconnecting…, numbers marked stale. Start it again on the same port
    (a new epoch, so recovered: false and a snapshot): the page resets to the new run's data,
    live, with no event shown twice."""
    daemon = daemons()
    browser.call("open", url=f"{daemon.http}/")
    browser.eval(WATCH_FEED)
    browser.wait(f"{STATE}.live && {ROWS}.length === 10 && window.osintdDashboard.events().length >= 20",
                 "a live page")
    old = browser.state()

    browser.call("phase", name="outage")
    assert daemon.stop() == 0
    wait_connection(browser, "reconnecting")
    # The last numbers stay for orientation but are marked stale, never shown as live.
    down = browser.eval(STALE_VIEW)
    assert down["stale"] and down["tags"] >= 5 and down["note"] == "last known" and down["rows"] == 10, down
    assert not browser.state()["live"]
    time.sleep(1.5)
    assert browser.eval("document.getElementById('conn').dataset.state") == "reconnecting"
    assert browser.state()["stats"]["connects"] >= 2, "no reconnect attempt while the server was down"
    # The browser itself goes off line: "offline", and no attempts until it is back.
    browser.call("offline", value=True)
    wait_connection(browser, "offline")
    attempts = browser.state()["stats"]["connects"]
    time.sleep(1)
    assert browser.state()["stats"]["connects"] == attempts
    browser.call("offline", value=False)
    browser.wait(f"{STATE}.stats.connects > {attempts}", "an attempt as soon as the browser is on line again")
    wait_connection(browser, "reconnecting")

    # Another seed, so a page that kept the old run's feed would show events this run never sent.
    # (With the same seed the new run replays the very same event ids and seqs.)
    restarted = daemons("--port", str(daemon.port), "--demo-seed", "4")
    assert restarted.port == daemon.port
    observer = observers(restarted.url)
    new_epoch = get_json(f"{restarted.http}/api/v1/health")["epoch"]
    assert new_epoch != old["epoch"]

    browser.wait(f"{STATE}.live && {STATE}.epoch === {json.dumps(new_epoch)}", "the new run's snapshot",
                 timeout=20)
    recent = {e["seq"]: e["event_id"] for e in get_json(f"{restarted.http}/api/v1/events")["events"]}
    browser.call("phase", name="restarted")
    wait_connection(browser, "connected")
    state = browser.state()
    assert not browser.eval(STALE_VIEW)["stale"]
    assert state["stats"]["resumedNotRecovered"] == 1 and state["stats"]["epochResets"] == 1
    restart_seq = state["lastSeq"]
    # (A page that comes back before the new run's first scoreboard gets an empty Top 10 and
    # fills it from the ranking_change messages that follow.)
    browser.wait(f"{ROWS}.length === 10", "10 rows from the new run")
    browser.wait(f"window.osintdDashboard.events().filter((e) => e.seq > {restart_seq}).length >= 20",
                 "live events from the new run")
    wait_board_matches_server(browser, restarted.http)

    # Only the new run's events are on screen, each once, each with the new run's seq.
    shown = browser.eval(SHOWN)
    assert_no_event_shown_twice(shown)
    assert {epoch for epoch, _, _ in shown} == {old["epoch"], new_epoch}
    feed = browser.eval(FEED)
    assert len({event_id for event_id, _ in feed}) == len(feed) <= 50
    known = {**recent, **observer.events()}
    strays = [(event_id, seq) for event_id, seq in feed if known.get(seq) != event_id]
    assert not strays, f"events on screen that the new run did not send: {strays[:10]}"
    assert_took_exactly(browser, observer, new_epoch, restart_seq)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.call("screenshot", path=str(ARTIFACTS / "dashboard-after-restart.png"))
    assert_console_clean(browser.close(), failed_reconnect_line(daemon.port), ("outage",))


def _row(rank: int, name: str) -> dict:
    return {"rank": rank, "repo_full_name": name, "activity_score": round(100.0 - rank, 1),
            "trend_status": "📊 STABLE", "momentum": "STEADY", "velocity": 1.0, "events_in_window": 50 - rank,
            "summary": f"Moderate activity with {50 - rank} events in 24h. Recent focus on bug fixes and tests."}


def _event(seq: int) -> dict:
    return {"event_id": f"commit_{seq:06d}", "repo_full_name": "r/0", "event_type": "commit",
            "title": f"Fix bug number {seq}", "author": "alice", "url": f"https://github.com/r/0/commit/{seq}",
            "data": {}, "seq": seq}


def test_dashboard_repairs_its_board_and_fills_a_gap(browser):
    """Against a scripted server: a snapshot whose board lags behind its seq makes the next
    ranking_change not fit, and the page takes the board from /api/v1/repos; a repeated frame
    is dropped; a gap in seq makes it reconnect with since= and take the replay; until the
    resume answer arrives nothing is shown as live; banner, metrics and trend updates render."""
    server = ScriptedServer()
    try:
        names = [f"r/{i}" for i in range(10)]
        browser.call("open", url=f"http://127.0.0.1:{server.port}/")
        browser.eval(WATCH_FEED)
        first = server.next_link()
        assert first.path == "/ws/live-updates"

        # seq 111 moved r/4 up and r/3 down, but the snapshot "including" 111 shows the old board.
        first.send("connection", status="connected", client_id="client_1", message="Connected", epoch="e1", seq=111)
        first.send("snapshot", epoch="e1", seq=111, top=[_row(i + 1, n) for i, n in enumerate(names)],
                   metrics=None, system={"type": "system_status", "status": "healthy", "components": {},
                                         "message": "All systems operational", "severity": "info"})
        browser.wait(f"{STATE}.live && {ROWS}.length === 10", "the snapshot's board")
        # Next tick: r/5 up 6 -> 5 and r/3 down 5 -> 6; on the stale board r/3 is at 4, not 5.
        true_order = ["r/0", "r/1", "r/2", "r/4", "r/5", "r/3", "r/6", "r/7", "r/8", "r/9"]
        server.board = {"repositories": [_row(i + 1, n) for i, n in enumerate(true_order)], "seq": 113}
        first.send("ranking_change", repo_full_name="r/5", old_rank=6, new_rank=5, activity_score=95.5,
                   change="up", seq=112)
        first.send("ranking_change", repo_full_name="r/3", old_rank=5, new_rank=6, activity_score=95.0,
                   change="down", seq=113)
        browser.wait(f"{RENDERED_BOARD}.map((r) => r.repo).join() === {json.dumps(','.join(true_order))}",
                     "the board taken from /api/v1/repos", timeout=8)
        assert [row["rank"] for row in browser.eval(RENDERED_BOARD)] == list(range(1, 11))
        assert any(path.startswith("/api/v1/repos") for path in server.requests)
        assert browser.state()["stats"]["boardResyncs"] >= 1

        # Events, a repeated frame (dropped), then a gap: 116 never comes on this connection.
        for seq in (114, 115, 115, 117):
            first.send("new_event", **_event(seq))
        second = server.next_link()
        assert second.path == "/ws/live-updates?since=115&epoch=e1", second.path
        assert first.closed.wait(5), "the page kept the connection with the gap open"
        second.send("connection", status="connected", client_id="client_2", message="Connected", epoch="e1", seq=117)
        time.sleep(1.2)  # no resume answer yet: the page must not claim to be live
        wait_connection(browser, "reconnecting", timeout=1)
        assert browser.eval(STALE_VIEW)["stale"] and not browser.state()["live"]
        second.send("resumed", recovered=True, since=115, epoch="e1", seq=117, replayed=2)
        second.send("new_event", **_event(116))
        second.send("new_event", **_event(117))
        expected = [[f"commit_{seq:06d}", seq] for seq in (117, 116, 115, 114)]
        browser.wait(f"JSON.stringify({FEED}) === {json.dumps(json.dumps(expected, separators=(',', ':')))}",
                     "the replayed events on screen, each once, in order")
        wait_connection(browser, "connected")
        assert_no_event_shown_twice(browser.eval(SHOWN))
        stats = browser.state()["stats"]
        assert stats["gaps"] == 1 and stats["duplicatesDropped"] >= 1 and stats["resumedRecovered"] == 1

        # Status banner while not healthy, an error shown briefly, metrics, a trend change.
        second.send("system_status", status="degraded", components={"api": "operational", "github": "degraded"},
                    message="GitHub API rate limit reached", severity="warning", seq=118)
        for _ in range(2):  # the same frame twice: shown once
            second.send("error", error_code="PIPELINE_ERROR", message="Failed to process event batch",
                        severity="warning", details={"retry_in_seconds": 60}, seq=119)
        second.send("metrics_update", total_events=1523, active_repositories=42, total_queries=89,
                    websocket_connections=5, changes={"total_events": "+5"}, seq=120)
        second.send("trend_change", repo_full_name="r/0", old_status="📊 STABLE", new_status="🔥 HOT",
                    momentum="ACCELERATING", velocity=2.8, activity_score=120.0, seq=121)
        banner = browser.wait("""(() => { const b = document.getElementById('banner');
            return b.classList.contains('show') && document.getElementById('errors').textContent
              && { sys: document.getElementById('sys').textContent, errors: document.getElementById('errors').textContent,
                   status: document.getElementById('sys').dataset.status }; })()""", "the banner")
        assert banner["status"] == "degraded" and "GitHub API rate limit reached" in banner["sys"], banner
        assert "PIPELINE_ERROR" in banner["errors"] and "retry in 60 s" in banner["errors"], banner
        browser.wait(f"{STATE}.lastSeq === 121", "the rest of the messages")
        assert browser.eval("document.querySelectorAll('#errors [data-code=PIPELINE_ERROR]').length") == 1
        browser.wait("document.getElementById('m-total_events').textContent === '1,523' && "
                     "document.getElementById('d-total_events').textContent === '+5' && "
                     "document.getElementById('m-websocket_connections').textContent === '5'", "the metrics")
        browser.wait(f"{ROWS}[0].querySelector('.badge').textContent === 'HOT' && "
                     f"{ROWS}[0].querySelector('.momentum').textContent.includes('accelerating')", "the trend")
        second.send("system_status", status="healthy", components={"api": "operational"},
                    message="All systems operational", severity="info", seq=122)
        browser.wait("document.getElementById('sys').textContent === '' && "
                     "document.getElementById('errors').textContent.includes('PIPELINE_ERROR')",
                     "the status line gone, the error still there for a while")

        # A heartbeat names seq 124 while the page has 122: two messages were lost unseen.
        second.send("heartbeat", seq=124)
        third = server.next_link()
        assert third.path == "/ws/live-updates?since=122&epoch=e1", third.path
        third.send("connection", status="connected", client_id="client_3", message="Connected", epoch="e1", seq=124)
        third.send("resumed", recovered=True, since=122, epoch="e1", seq=124, replayed=2)
        third.send("new_event", **_event(123))
        third.send("new_event", **_event(124))
        browser.wait(f"{STATE}.live && {STATE}.lastSeq === 124 && "
                     f"{FEED}.map(([, seq]) => seq).join() === '124,123,117,116,115,114'",
                     "the two lost messages replayed and shown")
        assert browser.state()["stats"]["gaps"] == 2

        browser.wait("!document.getElementById('banner').classList.contains('show')", "the error gone", timeout=12)
        assert_console_clean(browser.close())
    finally:
        server.close()
