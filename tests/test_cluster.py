"""Issue 16: a cluster of osintd nodes on Redis, end to end.

A real redis-server (AOF on) on a free port and three ``python -m osintd --demo --redis``
nodes; real WebSocket clients on each.  Stamped messages are compared by ``seq``
across nodes, the leader is killed with SIGKILL, and a client of the dead node resumes
on a survivor with ``?since&epoch``.  Webhook deliveries are POSTed to any node.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import attrs
import coredis
import httpx
import pytest
import trio
import trio_websocket

from tests.conftest import Daemon, spawn_daemon
from tests.redisserver import RedisServer, needs_redis
from resuming import STAMPED, follow

pytestmark = needs_redis

#: The messages the leader stamps (a heartbeat carries seq but is not stamped; a node's own
#: Redis status is said unstamped too, and no Redis trouble happens in these tests).


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def start_node(tmp_path, redis: RedisServer, *extra: str) -> Daemon:
    return spawn_daemon(tmp_path, "--demo", "--demo-rate", "20", "--redis", redis.url,
                        "--heartbeat-interval", "1", "--metrics-interval", "1", *extra)


@pytest.fixture
def nodes(tmp_path, redis):
    started: list[Daemon] = []
    yield lambda *extra: started.append(start_node(tmp_path, redis, *extra)) or started[-1]
    for node in started:
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait()


async def health(node: Daemon) -> dict:
    def get() -> dict:
        return httpx.get(f"{node.http}/api/v1/health", timeout=5).json()
    return await trio.to_thread.run_sync(get)


async def wait_for_leader(candidates: list[Daemon], timeout: float) -> Daemon:
    with trio.fail_after(timeout):
        while True:
            for node in candidates:
                if node.process.poll() is None and (await health(node)).get("role") == "leader":
                    return node
            await trio.sleep(0.1)


class Recorder:
    """One client: every stamped message it receives, in order, with the epoch it was told."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[dict] = []
        self.first: list[dict] = []
        self.epoch: str | None = None
        self.closed = trio.Event()
        self.connected = trio.Event()
        #: A node's own word on Redis: a system_status said unstamped, with the seq delivered so far.
        self.local_status: list[dict] = []

    async def run(self) -> None:
        try:
            async with trio_websocket.open_websocket_url(self.url) as ws:
                while True:
                    message = json.loads(await ws.get_message())
                    if message["type"] == "connection":
                        self.epoch = message["epoch"]
                        self.connected.set()
                    if message["type"] == "system_status" and self.messages \
                            and message["seq"] <= self.messages[-1]["seq"]:
                        self.local_status.append(message)
                    elif message["type"] in STAMPED:
                        self.messages.append(message)
                    elif message["type"] != "heartbeat":
                        self.first.append(message)
        except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError):
            pass
        finally:
            self.closed.set()

    @property
    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages]

    def by_seq(self) -> dict[int, dict]:
        return {m["seq"]: m for m in self.messages}


def assert_consecutive(seqs: list[int], who: str) -> None:
    assert seqs, f"{who} received nothing"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{who}: gap or duplicate in {seqs}"


async def test_clients_on_every_node_receive_the_same_messages_with_the_same_seq(nodes):
    cluster = [nodes() for _ in range(3)]
    await wait_for_leader(cluster, 15)
    recorders = [Recorder(node.url) for node in cluster]
    async with trio.open_nursery() as nursery:
        for recorder in recorders:
            nursery.start_soon(recorder.run)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    epochs = {recorder.epoch for recorder in recorders}
    assert len(epochs) == 1 and None not in epochs
    for node, recorder in zip(cluster, recorders):
        assert_consecutive(recorder.seqs, f"client of {node.url}")
        assert sum(m["type"] == "new_event" for m in recorder.messages) >= 20
    common = set.intersection(*(set(r.seqs) for r in recorders))
    assert len(common) >= 40
    for seq in common:  # the very same message, not just the same number
        assert recorders[0].by_seq()[seq] == recorders[1].by_seq()[seq] == recorders[2].by_seq()[seq]
    roles = sorted([(await health(node))["role"] for node in cluster])
    assert roles == ["follower", "follower", "leader"]


async def test_kill_9_the_leader_a_new_one_leads_and_no_client_sees_a_gap_or_a_duplicate(nodes):
    cluster = [nodes() for _ in range(3)]
    leader = await wait_for_leader(cluster, 15)
    survivors = [node for node in cluster if node is not leader]
    on_leader = Recorder(leader.url)
    on_survivors = [Recorder(node.url) for node in survivors]
    async with trio.open_nursery() as nursery:
        for recorder in (on_leader, *on_survivors):
            nursery.start_soon(recorder.run)
            await recorder.connected.wait()
        await trio.sleep(3)
        os.kill(leader.process.pid, signal.SIGKILL)
        killed_at = trio.current_time()
        await on_leader.closed.wait()
        new_leader = await wait_for_leader(survivors, 15)
        took = trio.current_time() - killed_at
        last = on_leader.seqs[-1]
        # The dead node's client resumes on another node from what it saw last.
        resumed = Recorder(f"{new_leader.url if new_leader is survivors[1] else survivors[1].url}"
                           f"?since={last}&epoch={on_leader.epoch}")
        nursery.start_soon(resumed.run)
        await trio.sleep(4)  # the new leader broadcasts for a while
        nursery.cancel_scope.cancel()

    print(f"new leader after {took:.1f} s")
    assert took < 15
    assert (await health(new_leader))["cluster"]["term"] >= 2
    for recorder in on_survivors:
        assert_consecutive(recorder.seqs, f"survivor client {recorder.url}")
        assert recorder.seqs[-1] > last + 20, "the new leader went on broadcasting"
        assert recorder.epoch == on_leader.epoch
    answer = next(m for m in resumed.first if m["type"] == "resumed")
    assert answer["recovered"] is True, answer
    assert_consecutive(on_leader.seqs + resumed.seqs, "the dead node's client, before and after resuming")
    reference = on_survivors[0].by_seq()
    for message in resumed.messages:  # exactly what it missed: the messages everybody else had
        if message["seq"] in reference:
            assert message == reference[message["seq"]]
    assert set(resumed.seqs) & set(on_survivors[0].seqs)


async def test_redis_stopped_10_s_nodes_say_degraded_then_recover_with_nothing_lost_or_repeated(nodes, redis):
    cluster = [nodes() for _ in range(2)]
    await wait_for_leader(cluster, 15)
    recorders = [Recorder(node.url) for node in cluster]
    async with trio.open_nursery() as nursery:
        for recorder in recorders:
            nursery.start_soon(recorder.run)
            await recorder.connected.wait()
        await trio.sleep(2)
        await trio.to_thread.run_sync(redis.stop)
        await trio.sleep(0.3)  # what was on its way to the clients as Redis went
        before = [recorder.seqs[-1] for recorder in recorders]
        with trio.fail_after(8):  # every node says so: health and its clients
            while not all([(await health(node))["components"].get("redis") == "down" for node in cluster]):
                await trio.sleep(0.2)
        down = [await health(node) for node in cluster]
        await trio.sleep(8)
        frozen = [recorder.seqs[-1] for recorder in recorders]
        await trio.to_thread.run_sync(redis.start)
        with trio.fail_after(20):
            while not all([(await health(node))["components"].get("redis") == "operational" for node in cluster]):
                await trio.sleep(0.2)
        leader = await wait_for_leader(cluster, 15)
        await trio.sleep(4)
        nursery.cancel_scope.cancel()

    for answer in down:
        assert answer["status"] == "degraded" and answer["cluster"]["redis"] == "down", answer
    # Nothing unstored reached a client while Redis was away (at most what was in flight as it went).
    for recorder, was, then in zip(recorders, before, frozen):
        assert then == was, (was, then)
        assert_consecutive(recorder.seqs, f"client of {recorder.url}")
        assert recorder.seqs[-1] > then + 10, "broadcasting resumed after Redis came back"
        assert any(s["components"].get("redis") == "down" for s in recorder.local_status)
        assert recorder.local_status[-1]["components"]["redis"] == "operational"
    common = set(recorders[0].seqs) & set(recorders[1].seqs)
    assert all(recorders[0].by_seq()[seq] == recorders[1].by_seq()[seq] for seq in common)
    assert (await health(leader))["role"] == "leader"


@pytest.mark.parametrize(("argv", "error"), [
    (["--redis", "http://127.0.0.1:6379"], "expected redis://HOST:PORT/DB"),
    (["--redis", "redis://127.0.0.1:6379/0", "--state-dir", "/tmp/x"], "drop --state-dir"),
    (["--redis", "redis://127.0.0.1:6379/0", "--cluster", "a b"], "is not a cluster name"),
])
def test_cluster_flags_are_checked_with_one_line_errors(argv, error):
    from osintd.cli import UsageError, settings_from

    with pytest.raises(UsageError, match=error):
        settings_from(argv, {})


def test_the_config_file_names_the_cluster_and_a_password_stays_out_of_repr(tmp_path):
    from osintd.cli import settings_from

    config = tmp_path / "osintd.toml"
    config.write_text('[cluster]\nredis = "redis://:sekrit@10.0.0.5:6379/0"\nname = "prod"\n')
    settings = settings_from(["--config", str(config)], {})
    assert (settings.redis_url, settings.cluster) == ("redis://:sekrit@10.0.0.5:6379/0", "prod")
    assert "sekrit" not in repr(settings)
    assert settings_from([], {}).redis_url is None


def test_a_node_that_cannot_reach_redis_says_so_in_one_line(tmp_path):
    import subprocess
    import sys

    from tests.redisserver import free_port

    result = subprocess.run([sys.executable, "-m", "osintd", "--demo", "--port", "0", "--redis",
                             f"redis://127.0.0.1:{free_port()}/0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("osintd: error: cannot reach Redis at redis://127.0.0.1:")
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ webhooks on any node

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "github-samples" / "webhooks"
SECRET = b"It's a Secret to Everybody"
DELIVERIES = "osintd:{osintd}:deliveries"


@pytest.fixture
def secret_file(tmp_path) -> str:
    path = tmp_path / "webhook-secret"
    path.write_bytes(SECRET)
    return str(path)


async def post_delivery(node: Daemon, event: str, body: bytes, delivery: str) -> httpx.Response:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
               "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()}
    async with httpx.AsyncClient() as http:
        return await http.post(f"{node.http}/webhooks/github", content=body, headers=headers, timeout=15)


def delivered(recorder: Recorder, event_id: str) -> list[dict]:
    return [m for m in recorder.messages if m["type"] == "new_event" and m["event_id"] == event_id]


async def wait_delivered(recorders: list[Recorder], event_id: str, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not all(delivered(recorder, event_id) for recorder in recorders):
            await trio.sleep(0.1)


async def stream_state(redis: RedisServer) -> tuple[int, int]:
    """The deliveries stream's length and how many of its entries are pending (taken, unacknowledged)."""
    async with coredis.Redis.from_url(redis.url) as client:
        length = await client.xlen(DELIVERIES)
        groups = await client.xinfo_groups(DELIVERIES) if length or await client.exists([DELIVERIES]) else ()
        return length, sum(int(group[b"pending"]) for group in groups)


async def test_a_delivery_posted_to_a_follower_is_broadcast_once_by_the_cluster(nodes, secret_file, redis):
    cluster = [nodes("--webhook-secret-file", secret_file) for _ in range(3)]
    leader = await wait_for_leader(cluster, 15)
    follower, other = [node for node in cluster if node is not leader]
    recorders = [Recorder(node.url) for node in cluster]
    body = (SAMPLES / "issues.opened.json").read_bytes()
    async with trio.open_nursery() as nursery:
        for recorder in recorders:
            nursery.start_soon(recorder.run)
            await recorder.connected.wait()
        await trio.sleep(1)
        answer = await post_delivery(follower, "issues", body, "delivery-on-a-follower")
        assert answer.status_code == 202, answer.text
        assert (answer.json()["status"], answer.json()["event_id"]) == ("accepted", "delivery-on-a-follower")
        await wait_delivered(recorders, "delivery-on-a-follower")
        # GitHub redelivers (by hand, or after a timeout): to the same node, to the leader, to another.
        again = [await post_delivery(node, "issues", body, "delivery-on-a-follower")
                 for node in (follower, leader, other)]
        await trio.sleep(3)  # the leader has long read the stream (it blocks for a second at most)
        nursery.cancel_scope.cancel()

    assert [response.status_code for response in again] == [200, 202, 202]  # only the receiving node knows it
    seqs = set()
    for node, recorder in zip(cluster, recorders):
        assert_consecutive(recorder.seqs, f"client of {node.url}")
        once = delivered(recorder, "delivery-on-a-follower")
        assert len(once) == 1, f"client of {node.url}: {once}"
        seqs.add(once[0]["seq"])
    assert len(seqs) == 1, "the same seq on every node"
    assert recorders[0].by_seq()[seqs.pop()] == recorders[1].by_seq()[once[0]["seq"]]
    # Acknowledged by the commit and deleted: nothing left to take up, nothing pending.
    assert await stream_state(redis) == (0, 0)
    stats = httpx.get(f"{follower.http}/api/v1/health", timeout=5).json()
    assert stats["role"] == "follower"

    await trio.to_thread.run_sync(redis.stop)  # Redis cannot take it: not acknowledged, GitHub redelivers
    refused = await post_delivery(follower, "issues", body, "delivery-while-redis-is-away")
    assert refused.status_code == 503 and refused.headers["retry-after"] == "60", refused.text


async def test_a_new_leader_takes_up_deliveries_an_old_one_took_and_never_committed(nodes, secret_file, redis):
    """Before any node runs, the stream holds what a leader killed mid-term left: two deliveries
    it read and never acknowledged, one of them committed (its id among the broadcast ones)."""
    from osintd.normalize import from_webhook
    from osintd.store import event_json

    def stored(delivery: str) -> bytes:
        event = from_webhook("issues", json.loads((SAMPLES / "issues.opened.json").read_bytes()),
                             dt.datetime.now(dt.timezone.utc), delivery)
        assert event is not None
        return event_json(attrs.evolve(event, source="webhook")).encode()

    async with coredis.Redis.from_url(redis.url) as client:
        await client.xgroup_create(DELIVERIES, "leaders", "0", mkstream=True)
        for delivery in ("taken-never-committed", "taken-and-committed"):
            await client.xadd(DELIVERIES, {"e": stored(delivery)})
        taken = await client.xreadgroup("leaders", "a-dead-leader", {DELIVERIES: ">"})
        assert taken and len(next(iter(taken.values()))) == 2
        await client.zadd("osintd:{osintd}:seen", {"taken-and-committed": dt.datetime.now().timestamp()})
        await client.hset("osintd:{osintd}:meta", {"epoch": "before"})  # to resume from the start

    cluster = [nodes("--webhook-secret-file", secret_file) for _ in range(2)]
    await wait_for_leader(cluster, 15)
    recorders = [Recorder(f"{node.url}?since=0&epoch=before") for node in cluster]
    async with trio.open_nursery() as nursery:
        for recorder in recorders:
            nursery.start_soon(recorder.run)
        await wait_delivered(recorders, "taken-never-committed")
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    for recorder in recorders:
        assert len(delivered(recorder, "taken-never-committed")) == 1
        assert not delivered(recorder, "taken-and-committed")
    assert await stream_state(redis) == (0, 0)


# ------------------------------------------------------------------ nothing lost, at the source

def live_node_url(cluster: list[Daemon], first: int) -> Callable[[], str]:
    """Node ``first``'s URL until it dies, then the next live node's."""
    at = first

    def url() -> str:
        nonlocal at
        while cluster[at].process.poll() is not None:
            at = (at + 1) % len(cluster)
        return cluster[at].url
    return url


async def test_kill_9_leaders_mid_stream_every_event_github_served_is_broadcast_once(tmp_path, redis, secret_file):
    """A loopback GitHub behind three nodes, webhook deliveries POSTed to any live node; the
    leader is killed twice while events come."""
    import random

    from osintd.clock import WallClock
    from osintd.normalize import from_events_api
    from tests.fakegithub import FakeGitHub, events_api_item

    clock, rng = WallClock(), random.Random(16)
    repos = ["crash/a", "crash/b", "crash/c"]
    token = tmp_path / "token"
    token.write_text("t")
    served: list[str] = []
    acknowledged: list[str] = []  # deliveries answered 202
    attempted: list[str] = []
    template = json.loads((SAMPLES / "watch.started.json").read_text())
    seen: list[list[dict]] = [[], [], []]
    cluster: list[Daemon] = []
    try:
        async with trio.open_nursery() as nursery:
            fake = await nursery.start(FakeGitHub(lambda: clock.now().timestamp(), poll_interval=1).serve)
            for repo in repos:
                fake.add_events(f"/repos/{repo}/events")
            args = ["--redis", redis.url, "--github-api-url", fake.url, "--github-token-file", str(token),
                    "--heartbeat-interval", "1", "--webhook-secret-file", secret_file,
                    *[x for r in repos for x in ("--repo", r)]]
            for _ in range(3):
                cluster.append(await trio.to_thread.run_sync(lambda: spawn_daemon(tmp_path, *args)))
            # A target's first poll without a stored cursor is backfill (scored, not broadcast):
            # events are fed from when every target's cursor is stored, so each one is news.
            async with coredis.Redis.from_url(redis.url) as client:
                with trio.fail_after(20):
                    while await client.hlen("osintd:{osintd}:cursors") < len(repos):
                        await trio.sleep(0.1)

            async def feed(stop: trio.Event) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    repo = rng.choice(repos)
                    item = events_api_item(n, repo, kind="PushEvent", at=clock.now().isoformat())
                    fake.add_events(f"/repos/{repo}/events", item)
                    served.append(from_events_api(item).event_id)
                    await trio.sleep(0.05)

            async def deliver(stop: trio.Event) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    delivery = f"00000000-0000-0000-0016-{n:012d}"
                    body = json.dumps(dict(template, sender={**template["sender"], "login": f"fan{n}"})).encode()
                    node = rng.choice([node for node in cluster if node.process.poll() is None])
                    attempted.append(delivery)
                    try:
                        answer = await post_delivery(node, "watch", body, delivery)
                    except httpx.HTTPError:  # the node died under it: not acknowledged, GitHub would retry
                        continue
                    if answer.status_code == 202:
                        acknowledged.append(delivery)
                    await trio.sleep(0.1)

            stop_feed, stop_clients = trio.Event(), trio.Event()
            nursery.start_soon(feed, stop_feed)
            nursery.start_soon(deliver, stop_feed)
            for index in range(3):
                nursery.start_soon(follow, live_node_url(cluster, index), seen[index], stop_clients)
            leaders = []
            for _ in range(2):
                leader = await wait_for_leader(cluster, 15)
                leaders.append(leader)
                await trio.sleep(rng.uniform(2.0, 4.0))  # mid-stream: polls, commits, broadcasts
                os.kill(leader.process.pid, signal.SIGKILL)
                await trio.to_thread.run_sync(leader.process.wait)
            last = await wait_for_leader(cluster, 15)
            await trio.sleep(3)
            stop_feed.set()
            with trio.move_on_after(30):  # the last poll of each target, then its broadcast
                while not all({m["event_id"] for m in messages if m["type"] == "new_event"}
                              >= set(served) | set(acknowledged) for messages in seen):
                    await trio.sleep(0.2)
            stop_clients.set()
            nursery.cancel_scope.cancel()
    finally:
        for node in cluster:
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait()

    assert len(served) > 100 and len(set(served)) == len(served)
    assert len(acknowledged) > 30
    assert last not in leaders and len(set(map(id, leaders))) == 2
    for index, messages in enumerate(seen):
        broadcast = [m["event_id"] for m in messages if m["type"] == "new_event"]
        missing = (set(served) | set(acknowledged)) - set(broadcast)
        assert not missing, f"client {index}: {len(missing)} events never broadcast: {sorted(missing)[:5]}"
        assert len(set(broadcast)) == len(broadcast), f"client {index}: an event broadcast twice"
        # A delivery whose answer was lost with its node may be broadcast too; nothing else is.
        assert set(broadcast) <= set(served) | set(attempted)
    assert seen[0] == seen[1] == seen[2]  # the same messages with the same seq, whichever node served them
