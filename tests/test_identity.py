"""Identity on real GitHub data: every event with its own GitHub id is kept; the same
activity seen by webhook and by polling is merged into one; repeats are kept as often
as they happened; the merging horizon; restarts keep both.

The real events are the two complete GH Archive hours of ``shared/real-github``
(2015-01-01 00:00 and 12:00 UTC, twelve hours apart).  A webhook delivery is made
from a real item the way the samples' README says the two shapes differ: the same
payload, with the full ``repository`` and ``sender`` objects of a webhook sample.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import json
import random

import attrs
import httpx
import pytest
import trio
import trio_websocket

from conftest import REAL_GITHUB, collect_for, make_settings, real_item, real_items, receive_json, start_app, ws_url
from fakegithub import FakeGitHub
from osintd.clock import WallClock
from osintd.identity import HORIZON, Identity, Verdict, channel_of
from osintd.models import Event, EventType
from osintd.normalize import from_events_api, from_webhook
from osintd.scorer import Scorer, ScoringModel
from osintd.store import Batch, StateStore

MIDNIGHT = "gharchive/2015-01-01-0.json.gz"
NOON = "gharchive/2015-01-01-12.json.gz"
SAMPLES = REAL_GITHUB.parent / "github-samples"
WEBHOOK_NAMES = {"PushEvent": "push", "CreateEvent": "create", "DeleteEvent": "delete", "WatchEvent": "watch",
                 "PullRequestEvent": "pull_request", "IssuesEvent": "issues", "ForkEvent": "fork",
                 "GollumEvent": "gollum", "IssueCommentEvent": "issue_comment", "ReleaseEvent": "release",
                 "CommitCommentEvent": "commit_comment", "PullRequestReviewCommentEvent": "pull_request_review_comment",
                 "MemberEvent": "member", "PublicEvent": "public"}


def sample(name: str) -> dict:
    return json.loads((SAMPLES / "webhooks" / name).read_text())


def webhook_body(item: dict) -> tuple[str, dict]:
    """The webhook delivery (X-GitHub-Event, body) for the activity of Events API ``item``."""
    created = dt.datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))
    repo, login = item["repo"]["name"], item["actor"]["login"]
    owner, name = repo.split("/")
    template = sample("push.branch-created.json")
    repository, sender = template["repository"], template["sender"]
    repository.update(id=item["repo"]["id"], name=name, full_name=repo, html_url=f"https://github.com/{repo}",
                      url=f"https://api.github.com/repos/{repo}", pushed_at=int(created.timestamp()))
    repository["owner"].update(login=owner, name=owner)
    sender.update(login=login, id=item["actor"]["id"])
    payload = dict(item["payload"])
    if item["type"] == "PushEvent":  # the webhook says after for head, and its commits carry ids
        commits = [{"id": c["sha"], "message": c["message"], "timestamp": item["created_at"], "author": c["author"],
                    "distinct": c["distinct"], "added": [], "removed": [], "modified": []}
                   for c in payload.get("commits", [])]
        payload = {"ref": payload["ref"], "before": payload["before"], "after": payload["head"], "created": False,
                   "deleted": False, "forced": False, "commits": commits,
                   "head_commit": commits[-1] if commits else None}
    return WEBHOOK_NAMES[item["type"]], {**payload, "repository": repository, "sender": sender}


def by_webhook(item: dict, delay: float = 2.0) -> Event:
    """``item``'s activity as the webhook receiver passes it on, ``delay`` seconds after it happened."""
    kind, body = webhook_body(item)
    received = dt.datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")) + dt.timedelta(seconds=delay)
    event = from_webhook(kind, body, received, f"delivery-{item['id']}")
    assert event is not None
    return attrs.evolve(event, source="webhook")


def by_poll(item: dict) -> Event:
    event = from_events_api(item, source="poll")
    assert event is not None
    return event


def shifted(item: dict, seconds: float, after: dict | None = None) -> dict:
    """``item`` as if it had happened ``seconds`` after itself (or after ``after``): another id, another event."""
    at = dt.datetime.fromisoformat((after or item)["created_at"].replace("Z", "+00:00")) + dt.timedelta(seconds=seconds)
    return {**item, "id": f"{item['id']}+{int(seconds)}", "created_at": at.isoformat().replace("+00:00", "Z")}


def scorer() -> Scorer:
    return Scorer(ScoringModel())


def _sign(body: bytes) -> str:
    return "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()


# ------------------------------------------------------------ (a) real hours


@pytest.mark.parametrize("name", [MIDNIGHT, NOON])
def test_no_real_event_with_its_own_id_is_dropped(name):
    items = real_items(name)
    events = [from_events_api(item, source="replay") for item in items]
    assert None not in events  # every type of the hour is normalized
    assert len({event.event_id for event in events}) == len(items)  # GitHub's ids are distinct …
    repeated = len(events) - len({event.activity_key for event in events})
    assert repeated > 0  # … while some activities repeat: a content key as the id would drop these
    s = scorer()
    assert all(s.accept(event) for event in events)
    assert (s.total_events, s.duplicates, s.merged) == (len(items), 0, 0)


async def test_a_replay_of_the_real_hours_keeps_every_event_and_counts_them_in_metrics(nursery, autojump_clock):
    app = await start_app(nursery, make_settings(replay=REAL_GITHUB / MIDNIGHT))
    await app.sources[0].finished.wait()
    with trio.fail_after(60):
        while app.scorer.total_events < app.sources[0].stats.events:
            await trio.sleep(0.5)
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{app.port}/metrics")).text
    items = real_items(MIDNIGHT)
    stats = app.sources[0].stats
    assert (stats.events, stats.skipped, stats.unusable) == (len(items), {}, 0)
    assert (app.scorer.total_events, app.scorer.duplicates, app.scorer.merged) == (len(items), 0, 0)
    ingested = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines() if line.startswith("osintd_events_ingested_total{")}
    assert sum(ingested.values()) == len(items)
    assert ingested['source="replay",type="wiki"'] == sum(1 for i in items if i["type"] == "GollumEvent") > 0
    assert "osintd_events_duplicate_total 0.0" in metrics and "osintd_events_merged_total 0.0" in metrics


# ------------------------------------------------ (b) webhook + poll: merged


def _current_push_and_its_webhook() -> tuple[dict, dict]:
    """GitHub's own current-shape PushEvent example and the push webhook for it (from the
    push sample, with that push's repository, ref, head and time)."""
    item = json.loads((SAMPLES / "events-api" / "list-repo-events.json").read_text())[0]
    body = sample("push.branch-created.json")
    body.update(ref=item["payload"]["ref"], before=item["payload"]["before"], after=item["payload"]["head"],
                created=False)
    body["head_commit"]["id"] = item["payload"]["head"]
    body["repository"].update(full_name="octocat/Hello-World", name="Hello-World",
                              pushed_at=int(dt.datetime.fromisoformat(item["created_at"]).timestamp()))
    body["sender"]["login"] = "octocat"
    return item, body


def test_every_real_event_by_webhook_and_by_a_poll_up_to_6_hours_later_is_one_event():
    """Both hours, every event: its webhook two seconds after it happened, its Events API
    item 30 s to 6 h later (GitHub's documented latency), in the order they would arrive."""
    rnd = random.Random(13)
    arrivals = []
    for item in real_items(MIDNIGHT) + real_items(NOON):
        at = dt.datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")).timestamp()
        arrivals += [(at + 2, "webhook", item), (at + rnd.uniform(30, 6 * 3600), "poll", item)]
    arrivals.sort(key=lambda arrival: arrival[0])
    s = scorer()
    kept = collections.Counter(source for _, source, item in arrivals
                               if s.accept(by_webhook(item) if source == "webhook" else by_poll(item)))
    assert kept == {"webhook": len(arrivals) // 2}  # every webhook kept, every poll merged with it
    assert (s.merged, s.duplicates) == (len(arrivals) // 2, 0)


@pytest.mark.parametrize("webhook_first", [True, False])
def test_a_webhook_delivery_and_a_poll_of_the_same_push_merge_into_one(webhook_first):
    item, body = _current_push_and_its_webhook()
    hooked = attrs.evolve(from_webhook("push", body, dt.datetime.fromisoformat(item["created_at"]), "d-1"),
                          source="webhook")
    polled = by_poll(item)
    assert hooked.event_id == "d-1" and polled.event_id == item["id"]
    first, second = (hooked, polled) if webhook_first else (polled, hooked)
    s = scorer()
    assert s.accept(first) and not s.accept(second)
    assert (s.total_events, s.merged, s.duplicates) == (1, 1, 0)


def test_a_push_that_created_its_branch_merges_although_the_two_shapes_disagree_on_before():
    # exuperok/dojo_rules, 12:00:37: branch new_rules created and pushed in one go.  The Events
    # API names the commit the branch started from as before; the webhook (see the
    # push.branch-created sample) says 000… and created: true.
    create, push = real_item(NOON, "2489582843"), real_item(NOON, "2489582848")
    assert push["payload"]["before"] != "0" * 40 and push["created_at"] == create["created_at"]
    hooked = by_webhook(push)
    kind, body = webhook_body(push)
    body.update(before="0" * 40, created=True)
    hooked = attrs.evolve(from_webhook(kind, body, hooked.created_at, hooked.event_id), source="webhook")
    s = scorer()
    assert s.accept(by_webhook(create)) and s.accept(hooked)
    assert not s.accept(by_poll(create)) and not s.accept(by_poll(push))
    assert (s.total_events, s.merged) == (2, 2)


def test_one_star_by_watch_and_star_webhooks_and_by_poll_is_one_event():
    item = json.loads((SAMPLES / "events-api" / "list-repo-events.json").read_text())[1]
    assert item["type"] == "WatchEvent"
    at = dt.datetime.fromisoformat(item["created_at"])
    hooks = []
    for name in ("watch.started.json", "star.created.json"):  # GitHub sends both for one star
        body = sample(name)
        body["repository"]["full_name"] = item["repo"]["name"]
        body["sender"]["login"] = item["actor"]["login"]
        body["starred_at"] = item["created_at"] if name.startswith("star") else None
        hooks.append(attrs.evolve(from_webhook(name.split(".")[0], body, at, f"d-{name}"), source="webhook"))
    s = scorer()
    assert [s.accept(event) for event in (*hooks, by_poll(item))] == [True, False, False]
    assert s.merged == 2


def test_one_tag_by_push_and_create_webhooks_and_by_poll_is_one_event():
    push, create = sample("push.tag-created.json"), sample("create.tag.json")
    at = dt.datetime.fromtimestamp(push["repository"]["pushed_at"], dt.timezone.utc)
    hooked = [attrs.evolve(from_webhook("push", push, at, "d-push"), source="webhook"),
              attrs.evolve(from_webhook("create", create, at + dt.timedelta(seconds=1), "d-create"),
                           source="webhook")]
    polled = by_poll({"id": "9", "type": "CreateEvent", "actor": {"login": "Codertocat"},
                      "repo": {"name": "Codertocat/Hello-World"}, "created_at": at.isoformat(),
                      "payload": {"ref": "simple-tag", "ref_type": "tag", "full_ref": "refs/tags/simple-tag",
                                  "master_branch": "master", "description": None, "pusher_type": "user"}})
    assert len({event.activity_key for event in (*hooked, polled)}) == 1
    assert len({channel_of(event) for event in (*hooked, polled)}) == 3
    s = scorer()
    assert [s.accept(event) for event in (*hooked, polled)] == [True, False, False]


async def test_a_webhook_and_a_poll_of_one_real_activity_are_broadcast_once(nursery, autojump_clock):
    """End to end: real merged-PR event, delivered by webhook, then listed by the Events API."""
    clock = WallClock()
    item = real_item(MIDNIGHT, "2489375077")  # cspray/labrador#46 closed (merged)
    # Happening now, for a live daemon: the same item, its times moved to the present.
    now = clock.now().replace(microsecond=0)
    item["created_at"] = now.isoformat().replace("+00:00", "Z")
    for key in ("closed_at", "merged_at", "updated_at"):
        item["payload"]["pull_request"][key] = item["created_at"]
    repo = item["repo"]["name"]
    fake = await nursery.start(FakeGitHub(lambda: clock.now().timestamp()).serve)
    fake.add_events(f"/repos/{repo}/events")  # nothing yet: the first poll primes the target
    app = await start_app(nursery, make_settings(webhook_secret=b"s", repos=(repo,), github_api_url=fake.url))
    kind, body = webhook_body(item)
    raw = json.dumps(body).encode()
    async with trio_websocket.open_websocket_url(ws_url(app, "snapshot=0&types=new_event")) as ws:
        await receive_json(ws)
        async with httpx.AsyncClient() as http:
            response = await http.post(f"http://127.0.0.1:{app.port}/webhooks/github", content=raw, headers={
                "X-GitHub-Event": kind, "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                "X-Hub-Signature-256": _sign(raw)})
        assert response.status_code == 202
        fake.add_events(f"/repos/{repo}/events", item)
        received = [m for m in await collect_for(ws, 200) if m["type"] == "new_event"]
    assert len(fake.requests) >= 2
    assert [m["event_id"] for m in received] == ["72d3162e-cc78-11e3-81ab-4c9367dc0958"]
    assert (app.scorer.total_events, app.scorer.merged) == (1, 1)


# ------------------------------------------------------- (c) repeats kept

#: Real repeats in the two hours, by GitHub id, in the order they happened.
REPEATS = {
    # waxerdima/chatcenter: gh-pages deleted, created, deleted and created again.
    "branch deleted and re-created": [(MIDNIGHT, i) for i in ("2489370858", "2489371022", "2489373790",
                                                              "2489374190")],
    # cspray/labrador#46: closed, reopened, closed (merged) two and a half minutes later.
    "pull request closed twice": [(MIDNIGHT, i) for i in ("2489369026", "2489369066", "2489375077")],
    # tomaka/glium#194: opened, closed, reopened, closed within 40 minutes.
    "pull request closed twice, again": [(NOON, i) for i in ("2489592066", "2489598707", "2489598718",
                                                             "2489598729")],
    # VincentDev/hello-world#1: opened, closed, reopened, closed.
    "issue closed twice": [(MIDNIGHT, i) for i in ("2489383674", "2489384783", "2489384878", "2489384906")],
    # jfly/gjcomps: commit c21687a pushed to master, then to production 20 s later.
    "one commit pushed to two refs": [(MIDNIGHT, "2489370478"), (MIDNIGHT, "2489370631")],
    # sshams/puremvc-swift-util-pipes: the repository created four times in ten minutes.
    "repository re-created": [(MIDNIGHT, i) for i in ("2489385338", "2489386435", "2489387864", "2489389851")],
    # lujinran starring Anchor89/GithubHub four times in 17 s (unstarring in between).
    "star given again": [(MIDNIGHT, i) for i in ("2489372052", "2489372078", "2489372090", "2489372175")],
}


@pytest.mark.parametrize("case", REPEATS)
def test_real_repeats_are_each_kept(case):
    items = [real_item(name, item_id) for name, item_id in REPEATS[case]]
    keys = collections.Counter(by_poll(item).activity_key for item in items)
    if case != "one commit pushed to two refs":
        assert max(keys.values()) >= 2  # the same activity key more than once: a repeat, not a look-alike
    else:
        assert items[0]["payload"]["head"] == items[1]["payload"]["head"] and len(keys) == 2
    # Replayed, or polled: each kept.
    s = scorer()
    assert all(s.accept(by_poll(item)) for item in items)
    # By webhook as they happen, then listed by the Events API: each kept once, every poll merged.
    s = scorer()
    assert all(s.accept(by_webhook(item)) for item in items)
    assert not any(s.accept(by_poll(item)) for item in items)
    assert (s.total_events, s.merged) == (len(items), len(items))
    # The poll first (a webhook delayed by GitHub), then the webhooks: the same.
    s = scorer()
    assert all(s.accept(by_poll(item)) for item in items)
    assert not any(s.accept(by_webhook(item, delay=60)) for item in items)


def test_repeats_seen_partly_by_each_source_are_counted_as_often_as_they_happened():
    # The pull request closed twice: the webhook missed the first close, the poll saw everything.
    closed, reopened, closed_again = (real_item(MIDNIGHT, i) for i in ("2489369026", "2489369066", "2489375077"))
    s = scorer()
    assert s.accept(by_webhook(reopened)) and s.accept(by_webhook(closed_again))
    assert [s.accept(by_poll(item)) for item in (closed, reopened, closed_again)] == [False, False, True]
    assert s.total_events == 3  # two closes and a reopen: each once


# ----------------------------------------------------------- (d) the horizon


def test_the_same_activity_by_webhook_and_by_poll_beyond_the_horizon_is_kept_twice():
    push = real_item(MIDNIGHT, "2489370478")  # jfly/gjcomps, 00:04:06
    later = real_item(NOON, "2489583012")     # another repository's event, 12:00:58
    s = scorer()
    assert s.accept(by_webhook(push))
    assert s.accept(by_poll(later))           # twelve hours on
    assert s.accept(by_poll(push))            # listed only now: beyond the 7 h horizon, a new event
    assert (s.total_events, s.merged) == (3, 0)


def test_within_the_horizon_a_late_poll_still_merges():
    push = real_item(MIDNIGHT, "2489370478")
    s = scorer()
    assert s.accept(by_webhook(push))
    assert s.accept(by_poll(shifted(real_item(MIDNIGHT, "2489370631"), HORIZON - 60)))  # 6 h 59 min later
    assert not s.accept(by_poll(push))  # GitHub's worst documented latency (6 h) and the poll's own delay
    assert s.merged == 1


def test_a_real_repeat_twelve_hours_later_is_a_new_event_whichever_source_sees_it():
    # sakai-mirror/melete: master moved to d2c7737 from d11ce94 at 00:35:45, and again at 12:35:32.
    first, again = real_item(MIDNIGHT, "2489385638"), real_item(NOON, "2489594912")
    assert by_poll(first).activity_key == by_poll(again).activity_key
    s = scorer()
    assert s.accept(by_webhook(first)) and s.accept(by_poll(again))
    assert s.merged == 0


def test_the_horizon_is_event_time_not_arrival_order():
    identity = Identity(horizon=HORIZON)
    push = real_item(MIDNIGHT, "2489370478")
    assert identity.see(by_webhook(push)) is Verdict.NEW
    # Other webhooks up to just inside the horizon: still matched.
    for n, seconds in enumerate((3600, 3 * 3600, HORIZON - 10)):
        other = shifted(real_item(MIDNIGHT, "2489374190"), seconds, after=push)
        assert identity.see(by_webhook(other, delay=n)) is Verdict.NEW
    assert identity.see(by_poll(push)) is Verdict.MERGED
    assert identity.see(by_poll(shifted(push, 60))) is Verdict.NEW  # a second push of it: not seen by webhook
    # One more webhook, just past the horizon of the push: the push's sighting is forgotten.
    identity.see(by_webhook(shifted(real_item(MIDNIGHT, "2489374190"), HORIZON + 120, after=push)))
    assert identity.see(by_poll(shifted(push, 90))) is Verdict.NEW


# -------------------------------------------------------- (e) after a restart


async def test_a_restart_keeps_dedupe_by_id_and_merging(tmp_path):
    items = [real_item(MIDNIGHT, i) for i in ("2489370858", "2489371022", "2489373790", "2489374190")]
    hooked = [by_webhook(item) for item in items]
    store = await StateStore.open(tmp_path, ring_capacity=10, window=86_400.0)
    first = scorer()
    assert all(first.accept(event) for event in hooked)
    await store.commit(Batch(events=hooked))  # the hub stores what it broadcast
    await store.close()

    store = await StateStore.open(tmp_path, ring_capacity=10, window=86_400.0)
    saved = await store.load()
    await store.close()
    assert [event.activity_key for event in saved.events] == [event.activity_key for event in hooked]
    second = scorer()
    second.restore(saved.events, saved.seen, {})
    assert second.total_events == 4
    assert not any(second.accept(event) for event in hooked)  # redelivered: the same ids
    assert second.duplicates == 4
    assert not any(second.accept(by_poll(item)) for item in items)  # polled after the restart: merged
    assert second.merged == 4
    assert second.accept(by_poll(shifted(items[-1], 60)))  # and a real repeat is still news


async def test_events_stored_by_an_older_osintd_load_and_dedupe_by_id(tmp_path):
    store = await StateStore.open(tmp_path, ring_capacity=10, window=86_400.0)
    old = Event("commit_a/b_" + "1" * 40, "a/b", EventType.COMMIT, "Fix", "octocat", "https://github.com/a/b",
                dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc), source="poll")
    await store.commit(Batch(events=[old]))
    # Rewrite the stored body as an older osintd wrote it: without activity_key.
    body = json.loads(store._db.execute("SELECT body FROM events").fetchone()[0])
    del body["activity_key"]
    store._db.execute("UPDATE events SET body = ?", (json.dumps(body),))
    saved = await store.load()
    await store.close()
    assert saved.events == [old] and saved.events[0].activity_key == ""
    s = scorer()
    s.restore(saved.events, saved.seen, {})
    assert not s.accept(old) and s.duplicates == 1


async def test_a_restarted_daemon_merges_a_poll_with_the_webhook_it_stored(tmp_path):
    clock = WallClock()
    item = real_item(MIDNIGHT, "2489370478")
    item["created_at"] = clock.now().replace(microsecond=0).isoformat().replace("+00:00", "Z")
    repo = item["repo"]["name"]
    kind, body = webhook_body(item)
    raw = json.dumps(body).encode()
    headers = {"X-GitHub-Event": kind, "X-GitHub-Delivery": "d-restart",
               "X-Hub-Signature-256": _sign(raw)}
    async with trio.open_nursery() as outer:
        fake = await outer.start(FakeGitHub(lambda: clock.now().timestamp()).serve)
        fake.add_events(f"/repos/{repo}/events")
        settings = make_settings(webhook_secret=b"s", repos=(repo,), github_api_url=fake.url,
                                 state_dir=tmp_path / "state")
        async with trio.open_nursery() as nursery:
            first = await start_app(nursery, settings)
            async with trio_websocket.open_websocket_url(ws_url(first, "snapshot=0&types=new_event")) as ws:
                await receive_json(ws)
                async with httpx.AsyncClient() as http:
                    url = f"http://127.0.0.1:{first.port}/webhooks/github"
                    assert (await http.post(url, content=raw, headers=headers)).status_code == 202
                assert (await receive_json(ws))["event_id"] == "d-restart"  # broadcast, so stored
            await first.shutdown()
        fake.add_events(f"/repos/{repo}/events", item)  # GitHub lists it while osintd is down
        async with trio.open_nursery() as nursery:
            second = await start_app(nursery, settings)
            async with trio_websocket.open_websocket_url(ws_url(second, "snapshot=0&types=new_event")) as ws:
                await receive_json(ws)
                async with httpx.AsyncClient() as http:  # GitHub redelivers the webhook too
                    url = f"http://127.0.0.1:{second.port}/webhooks/github"
                    assert (await http.post(url, content=raw, headers=headers)).status_code == 202
                received = [m for m in await collect_for(ws, 5) if m["type"] == "new_event"]
            await second.shutdown()
        outer.cancel_scope.cancel()
    assert received == []
    assert (second.scorer.merged, second.scorer.duplicates) == (1, 1)


# ---------------------------------------------------------------- the rule


def _event(event_id: str, key: str, source: str, at: float = 0.0, via: str | None = None) -> Event:
    return Event(event_id, "a/b", EventType.STAR, "Starred a/b", "octocat", "https://github.com/a/b",
                 dt.datetime.fromtimestamp(1_420_070_400 + at, dt.timezone.utc),
                 data={"via": via} if via else {}, source=source, activity_key=key)


@pytest.mark.parametrize(("order", "verdicts"), [
    ("WWPP", "NNMM"), ("WPWP", "NMNM"), ("PPWW", "NNMM"), ("WPPW", "NMNM"), ("WWWP", "NNNM"),
])
def test_the_nth_sighting_by_one_source_matches_the_nth_by_the_other(order, verdicts):
    identity = Identity()
    source = {"W": "webhook", "P": "poll"}
    got = "".join(identity.see(_event(f"{n}", "k", source[kind], at=n)).name[0] for n, kind in enumerate(order))
    assert got == verdicts


def test_replay_and_poll_are_one_kind_and_demo_is_by_id_only():
    identity = Identity()
    assert identity.see(_event("1", "k", "replay")) is Verdict.NEW
    assert identity.see(_event("2", "k", "poll")) is Verdict.NEW  # the same kind of source: a repeat
    assert identity.see(_event("3", "k", "webhook")) is Verdict.MERGED
    assert identity.see(_event("4", "k", "demo")) is Verdict.NEW
    assert identity.see(_event("4", "k", "demo")) is Verdict.DUPLICATE
    assert identity.see(_event("5", "", "webhook")) is Verdict.NEW  # no key (an old stored event): by id only
    assert identity.see(_event("6", "", "poll")) is Verdict.NEW


def test_memory_is_bounded_in_ids_and_in_sightings():
    identity = Identity(capacity=100)
    for n in range(1000):
        assert identity.see(_event(f"w{n}", f"k{n}", "webhook", at=n)) is Verdict.NEW
    assert identity.sightings == 100 and len(identity._ids) == 100
    assert identity.see(_event("w999", "k999", "webhook", at=999)) is Verdict.DUPLICATE
    assert identity.see(_event("w0", "k0", "webhook", at=0)) is Verdict.NEW       # the oldest id: forgotten
    assert identity.see(_event("p999", "k999", "poll", at=999)) is Verdict.MERGED  # recent: remembered
    assert identity.see(_event("p1", "k1", "poll", at=1)) is Verdict.NEW          # the oldest sighting: forgotten
    assert identity.sightings == 100


def test_sightings_older_than_the_horizon_are_forgotten():
    identity = Identity(horizon=100.0)
    for n in range(50):
        identity.see(_event(f"w{n}", f"k{n}", "webhook", at=10.0 * n))  # 0 … 490 s
    assert identity.sightings == 11  # 390 … 490: within 100 s of the newest
    assert identity.see(_event("p", "k45", "poll", at=450.0)) is Verdict.MERGED
    assert identity.see(_event("q", "k10", "poll", at=100.0)) is Verdict.NEW
