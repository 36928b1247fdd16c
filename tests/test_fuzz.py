"""Property-based tests (hypothesis) of every parser a stranger can reach (issue 14):
the client request decoder, the glob matcher, the normalizer on mutations of real GitHub
data, and the HTTP head parser of a running daemon.  Each asserts the input is answered
with a clear error or accepted (never another exception), in bounded time, and that the
daemon keeps serving.  Example counts are kept small: the suite's time budget is minutes.
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
import re
import socket
import urllib.request
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import spawn_daemon
from osintd import wire
from osintd.globs import Glob
from osintd.messages import INCOMING_TYPES
from osintd.models import Event
from osintd.normalize import Unusable, from_events_api

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-github" / "gharchive" / "2015-01-01-12.json.gz"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=200)
@given(st.one_of(
    st.text(max_size=300),
    st.builds(lambda kind, rest: json.dumps({"type": kind, **rest}),
              st.sampled_from([*INCOMING_TYPES, "nope", ""]), st.dictionaries(st.text(max_size=10), json_values,
                                                                               max_size=4))))
def test_a_client_message_is_a_request_or_a_clear_rejection(text):
    try:
        request = wire.decode_request(text)
    except wire.RequestRejected as rejected:
        assert rejected.error_code in {"INVALID_JSON", "INVALID_MESSAGE", "UNKNOWN_TYPE"} and rejected.message
    else:
        assert type(request).TYPE in INCOMING_TYPES


def _reference(glob: str, name: str) -> bool:
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.fullmatch(pattern, name, re.DOTALL) is not None


@settings(max_examples=500, deadline=200)
@given(st.text(alphabet="ab*?/.[]\\-", max_size=30), st.text(alphabet="ab/.[]-", max_size=30))
def test_globs_mean_star_and_question_mark_and_nothing_else(glob, name):
    assert Glob.compile(glob).matches(name) == _reference(glob, name)


@functools.cache
def _real_items() -> list[dict]:
    lines = gzip.decompress(REAL.read_bytes()).split(b"\n")
    return [orjson.loads(line) for line in lines[:300] if line.strip()]


def _paths(value, prefix=()):
    """Every (path) into a JSON value, to mutate one of them."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@pytest.mark.skipif(not REAL.exists(), reason="shared/real-github is not beside the repository")
@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_normalizer_survives_mutations_of_real_events(data):
    items = _real_items()
    item = copy.deepcopy(data.draw(st.sampled_from(items)))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(item))
        path = data.draw(st.sampled_from(paths[1:]))
        parent = item
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    try:
        event = from_events_api(item, source="replay")
    except Unusable as unusable:
        assert str(unusable) and len(str(unusable)) < 2_000
        return
    if event is not None:
        assert isinstance(event, Event) and len(event.title) <= 300 and len(event.repo_full_name) <= 140
        orjson.dumps(dict(event.data))  # JSON primitives only


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    running = spawn_daemon(tmp_path_factory.mktemp("fuzz"), "--demo")
    yield running
    running.stop()


heads = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda method, target, version, headers: (
        f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode(
        "utf-8", "surrogatepass"),
        st.sampled_from(["GET", "POST", "HEAD", "PUT", "G ET", ""]),
        st.sampled_from(["/", "/health", "/ws/live-updates", "/api/v1/repos", "*", "http://x/", "/%00"]),
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/9.9", "HTTP/1.1x", ""]),
        st.lists(st.tuples(st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "Upgrade",
                                            "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "X"]),
                           st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)),
                 max_size=6)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(heads)
def test_any_request_head_gets_an_http_answer_or_a_close_and_the_daemon_serves_on(daemon, head):
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(head)
        sock.shutdown(socket.SHUT_WR)  # the whole request: the server must answer or close
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100]
    with urllib.request.urlopen(f"{daemon.http}/health", timeout=2) as response:
        assert response.status == 200
