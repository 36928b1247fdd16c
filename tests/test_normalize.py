"""The normalizer maps every GitHub sample, in both shapes, to the right ``Event``.

Samples live in ``shared/github-samples`` beside the repository (see its
README).  Where the samples have gaps (no merged PR, no ``issues.closed``, no
branch create/delete) the tests build the missing variant from the closest
sample and say so.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest

from conftest import REAL_GITHUB, real_item, real_items
from osintd.models import Event, EventType
from osintd.normalize import Unusable, from_events_api, from_webhook, parse_time

UTC = dt.timezone.utc
SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "github-samples"
WEBHOOK_FILES = sorted(p for p in (SAMPLES / "webhooks").glob("*.json")
                       if not p.name.startswith("_delivery-headers"))
EVENTS_API_FILES = sorted(p for p in (SAMPLES / "events-api").rglob("*.json")
                          if not p.name.startswith("_event-payload-schemas"))
RECEIVED = dt.datetime(2026, 1, 15, 10, 30, 5, tzinfo=UTC)
HEAD = "7a8f3ac80e2ad2f6842cb86f576d4bfe2c03e300"
ZERO = "0" * 40


def load(name: str) -> dict:
    return json.loads((SAMPLES / "webhooks" / name).read_text())


def hook(name: str, payload: dict | None = None, received_at: dt.datetime = RECEIVED) -> Event | None:
    """Normalise webhook sample ``name`` (or ``payload`` under that sample's event name)."""
    return from_webhook(name.split(".")[0], load(name) if payload is None else payload, received_at)


def api_items() -> list[tuple[str, int, dict]]:
    items = []
    for path in EVENTS_API_FILES:
        for index, item in enumerate(json.loads(path.read_text())):
            items.append((str(path.relative_to(SAMPLES)), index, item))
    return items


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def assert_well_formed(event: Event) -> None:
    assert isinstance(event.event_type, EventType)
    assert event.activity_key.startswith(f"{event.event_type}:") and event.event_id
    assert event.title and "\n" not in event.title
    assert event.author
    assert event.url.startswith("https://")
    assert event.created_at.tzinfo is not None and event.created_at.utcoffset() == dt.timedelta(0)
    assert "/" in event.repo_full_name
    json.dumps(dict(event.data))  # JSON-serialisable …
    assert all(isinstance(v, (str, int, float, bool)) for v in event.data.values())  # … primitives


# ------------------------------------------------------- every sample file

#: file → (event_type, action, activity_key); None = skipped on purpose (see normalize's docstring).
WEBHOOK_EXPECTED: dict[str, tuple[EventType, str | None, str] | None] = {
    "check_suite.rerequested.bot-sender.json": None,  # type osintd does not use
    "create.tag.json": (EventType.CREATE, "tag", "create:Codertocat/Hello-World:tag:simple-tag"),
    "create.tag.with-organization.json": (EventType.CREATE, "tag", "create:Codertocat/Hello-World:tag:simple-tag"),
    "delete.tag.json": (EventType.DELETE, "tag", "delete:Codertocat/Hello-World:tag:simple-tag"),
    "discussion.created.json": (EventType.DISCUSSION, "created", "discussion:octo-org/octo-repo:90:created"),
    "discussion.created.with-installation.json": (
        EventType.DISCUSSION, "created", "discussion:Codertocat/Hello-World:4:created"),
    "fork.json": (EventType.FORK, None, "fork:Octocoders/Hello-World"),
    "issue_comment.created.json": (EventType.COMMENT, "created", "comment:issue:492700400"),
    "issue_comment.created.with-organization.json": (EventType.COMMENT, "created", "comment:issue:492700400"),
    "issues.opened.after-transfer.json": (EventType.ISSUE, "opened", "issue:Codertocat/Hello-World:1:opened"),
    "issues.opened.json": (EventType.ISSUE, "opened", "issue:Codertocat/Hello-World:1:opened"),
    "issues.opened.with-null-body.json": (EventType.ISSUE, "opened", "issue:Codertocat/Hello-World:1:opened"),
    "issues.opened.with-organization.json": (EventType.ISSUE, "opened", "issue:Codertocat/Hello-World:1:opened"),
    "issues.reopened.json": (EventType.ISSUE, "reopened", "issue:Codertocat/Hello-World:1:reopened"),
    "member.added.json": (EventType.MEMBER, "added", "member:Codertocat/Hello-World:hacktocat:added"),
    "member.edited.json": (EventType.MEMBER, "edited", "member:Codertocat/Hello-World:octocat:edited"),
    "public.json": (EventType.PUBLIC, None, "public:Codertocat/Hello-World"),
    "pull_request.closed.json": (EventType.PULL_REQUEST, "closed", "pull_request:Codertocat/Hello-World:2:closed"),
    "pull_request.closed.with-organization.json": (
        EventType.PULL_REQUEST, "closed", "pull_request:Codertocat/Hello-World:2:closed"),
    "pull_request.opened.json": (EventType.PULL_REQUEST, "opened", "pull_request:Codertocat/Hello-World:2:opened"),
    "pull_request.opened.with-null-body.json": (
        EventType.PULL_REQUEST, "opened", "pull_request:Codertocat/Hello-World:2:opened"),
    "pull_request.synchronize.json": None,  # new commits arrive as their own push
    "pull_request_review.submitted.json": (EventType.REVIEW, "commented", "review:237895671"),
    "pull_request_review.submitted.with-organization.json": (EventType.REVIEW, "commented", "review:237895671"),
    "push.branch-created.author-without-username.json": (
        EventType.COMMIT, None, "commit:Codertocat/Hello-World:master:6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
    "push.branch-created.json": (EventType.COMMIT, None, "commit:Codertocat/Hello-World:master:6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
    # A tag push is the tag's creation/deletion, with the id of GitHub's own create/delete event.
    "push.tag-created.ghes-3.5.json": (EventType.CREATE, "tag", "create:Codertocat/Hello-World:tag:simple-tag"),
    "push.tag-created.json": (EventType.CREATE, "tag", "create:Codertocat/Hello-World:tag:simple-tag"),
    "push.tag-deleted.with-organization.json": (
        EventType.DELETE, "tag", "delete:Codertocat/Hello-World:tag:simple-tag"),
    "release.published.json": (EventType.RELEASE, "published", "release:17372790"),
    "star.created.json": (EventType.STAR, "started", "star:Codertocat/Hello-World:Codertocat"),
    "star.deleted.json": None,  # an un-star is not activity
    "watch.started.json": (EventType.STAR, "started", "star:Codertocat/Hello-World:Codertocat"),
}


def test_the_samples_are_there():
    assert {p.name for p in WEBHOOK_FILES} == set(WEBHOOK_EXPECTED)
    assert len(EVENTS_API_FILES) == 11
    assert len(api_items()) == 22


@pytest.mark.parametrize("path", WEBHOOK_FILES, ids=lambda p: p.name)
def test_every_webhook_sample(path: Path):
    event = from_webhook(path.name.split(".")[0], json.loads(path.read_text()), RECEIVED)
    expected = WEBHOOK_EXPECTED[path.name]
    if expected is None:
        assert event is None
        return
    assert event is not None
    assert (event.event_type, event.action, event.activity_key) == expected
    assert event.event_id == event.activity_key  # no X-GitHub-Delivery: the activity key stands in
    assert from_webhook(path.name.split(".")[0], json.loads(path.read_text()), RECEIVED,
                        "72d3162e-cc78-11e3-81ab-4c9367dc0958").event_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert_well_formed(event)


@pytest.mark.parametrize(("name", "index", "item"), api_items(), ids=lambda v: str(v)[-40:])
def test_every_events_api_item(name: str, index: int, item: dict):
    event = from_events_api(item)
    assert event is not None
    assert_well_formed(event)
    assert event.repo_full_name == item["repo"]["name"]
    assert event.author == "octocat" and not event.is_bot
    assert event.created_at == utc(item["created_at"])
    assert event.event_id == item["id"]  # GitHub's own id
    repo = item["repo"]["name"]
    expected = {"PushEvent": (EventType.COMMIT, None, f"commit:{repo}:master:{HEAD}"),
                "WatchEvent": (EventType.STAR, "started", f"star:{repo}:octocat"),
                "CreateEvent": (EventType.CREATE, "repository", f"create:{repo}:repository")}
    assert (event.event_type, event.action, event.activity_key) == expected[item["type"]]


# ---------------------------------------------------- the same activity twice


def _envelope(event_name: str, body: dict) -> dict:
    """The Events API item GitHub would list for webhook ``body`` (payload reduced the way the README describes)."""
    types = {"push": "PushEvent", "pull_request": "PullRequestEvent", "issues": "IssuesEvent",
             "issue_comment": "IssueCommentEvent", "pull_request_review": "PullRequestReviewEvent",
             "release": "ReleaseEvent", "watch": "WatchEvent", "star": "WatchEvent", "fork": "ForkEvent",
             "create": "CreateEvent", "delete": "DeleteEvent", "discussion": "DiscussionEvent",
             "member": "MemberEvent", "public": "PublicEvent"}
    payload = {k: v for k, v in body.items()
               if k not in ("repository", "sender", "organization", "installation", "enterprise")}
    if event_name == "push":  # the current, reduced PushEvent shape
        payload = {"repository_id": body["repository"]["id"], "push_id": 1, "ref": body["ref"],
                   "head": body["after"], "before": body["before"]}
    elif event_name == "star":
        payload = {"action": "started"}
    elif event_name == "pull_request_review":
        payload["action"] = "created"  # the Events API's word for a submitted review
    return {"id": "99", "type": types[event_name],
            "actor": {"id": 1, "login": body["sender"]["login"]},
            "repo": {"id": 2, "name": body["repository"]["full_name"],
                     "url": f"https://api.github.com/repos/{body['repository']['full_name']}"},
            "payload": payload, "public": True, "created_at": "2026-01-15T10:30:00Z"}


@pytest.mark.parametrize("name", [n for n, e in WEBHOOK_EXPECTED.items()
                                  if e is not None and not n.startswith("check_suite")])
def test_webhook_and_events_api_forms_of_one_activity_share_the_activity_key(name: str):
    body = load(name)
    webhook_event = hook(name, body)
    api_event = from_events_api(_envelope(name.split(".")[0], body))
    assert webhook_event is not None and api_event is not None
    assert api_event.activity_key == webhook_event.activity_key
    assert (api_event.event_type, api_event.action) == (webhook_event.event_type, webhook_event.action)
    assert api_event.created_at == dt.datetime(2026, 1, 15, 10, 30, tzinfo=UTC)


def test_push_from_list_repo_events_and_its_webhook_share_the_activity_key():
    item = json.loads((SAMPLES / "events-api" / "list-repo-events.json").read_text())[0]
    assert item["type"] == "PushEvent" and "commits" not in item["payload"]
    # The webhook for that push, derived from push.branch-created: same repo, sender, ref, before and head.
    body = load("push.branch-created.json")
    body["repository"].update(full_name="octocat/Hello-World", html_url="https://github.com/octocat/Hello-World")
    body["sender"]["login"] = "octocat"
    body.update(before=item["payload"]["before"], after=HEAD, created=False)
    body["head_commit"].update(id=HEAD, message="Fix the parser\n\nLong description",
                               url=f"https://github.com/octocat/Hello-World/commit/{HEAD}")
    body["commits"] = [dict(body["head_commit"])]
    webhook_event, api_event = hook("push.x", body), from_events_api(item)
    assert webhook_event.activity_key == api_event.activity_key == f"commit:octocat/Hello-World:master:{HEAD}"
    assert webhook_event.title == "Fix the parser"
    assert api_event.title == "Pushed to master"  # the current shape has no commit messages
    assert api_event.url == webhook_event.url == f"https://github.com/octocat/Hello-World/commit/{HEAD}"


def test_star_from_list_repo_events_watch_and_star_webhooks_share_the_activity_key():
    item = json.loads((SAMPLES / "events-api" / "list-repo-events.json").read_text())[1]
    assert item["type"] == "WatchEvent"
    ids = {from_events_api(item).activity_key}
    for name in ("watch.started.json", "star.created.json"):  # GitHub sends both for one star
        body = load(name)
        body["repository"]["full_name"] = "octocat/Hello-World"
        body["sender"]["login"] = "octocat"
        ids.add(hook(name, body).activity_key)
    assert ids == {"star:octocat/Hello-World:octocat"}


def test_create_repository_legacy_and_current_shapes_share_the_activity_key():
    legacy = json.loads((SAMPLES / "events-api/legacy-openapi-16.6.0/list-org-events-for-authenticated-user.json")
                        .read_text())[1]
    current = json.loads((SAMPLES / "events-api/list-received-events-for-user.json").read_text())[1]
    assert legacy["payload"]["ref"] is None and current["payload"]["ref"] == "master"
    assert from_events_api(legacy).activity_key == from_events_api(current).activity_key


def test_different_activities_get_different_activity_keys():
    opened, closed = hook("pull_request.opened.json"), hook("pull_request.closed.json")
    issue, reopened = hook("issues.opened.json"), hook("issues.reopened.json")
    created, deleted = hook("create.tag.json"), hook("delete.tag.json")
    other_star = load("watch.started.json")
    other_star["sender"]["login"] = "someone-else"
    other_ref = load("push.branch-created.json")
    other_ref["ref"] = "refs/heads/gh-pages"  # the same commit pushed to another branch
    keys = [e.activity_key for e in (opened, closed, issue, reopened, created, deleted,
                                     hook("watch.started.json"), hook("watch.started.json", other_star),
                                     hook("push.branch-created.json"), hook("push.x", other_ref),
                                     hook("release.published.json"), hook("issue_comment.created.json"),
                                     hook("pull_request_review.submitted.json"))]
    assert len(set(keys)) == len(keys)


# ---------------------------------------------------------- real data, every type

REAL_FILES = sorted(str(p.relative_to(REAL_GITHUB)) for p in REAL_GITHUB.glob("*/*.json.gz"))


@pytest.mark.parametrize("name", REAL_FILES)
def test_every_real_event_is_normalized(name):
    """Every item of the shared real files becomes an event: no type or shape there is skipped or unusable."""
    items = real_items(name)
    events = [from_events_api(item, source="replay") for item in items]
    assert None not in events
    for item, event in zip(items, events):
        assert_well_formed(event)
        assert event.event_id == item["id"]
    kinds = {item["type"]: event.event_type for item, event in zip(items, events)}
    assert kinds.get("GollumEvent", EventType.WIKI) is EventType.WIKI
    assert kinds.get("PullRequestReviewCommentEvent", EventType.COMMENT) is EventType.COMMENT


def test_the_real_files_hold_the_types_their_readme_lists():
    kinds = {item["type"] for name in REAL_FILES for item in real_items(name)}
    assert kinds == {"PushEvent", "CreateEvent", "WatchEvent", "IssueCommentEvent", "PullRequestEvent",
                     "IssuesEvent", "ForkEvent", "DeleteEvent", "GollumEvent", "PullRequestReviewCommentEvent",
                     "ReleaseEvent", "CommitCommentEvent", "MemberEvent", "PublicEvent", "PullRequestReviewEvent"}


def test_gollum_is_a_wiki_event_by_either_shape():
    created = from_events_api(real_item("gharchive/2015-01-01-0.json.gz", "2489373111"))  # mmisw/orr-ont
    assert (created.event_type, created.action, created.weight_key) == (EventType.WIKI, "created", "wiki.created")
    assert created.title == "Wiki page specification created"
    assert created.url == "https://github.com/mmisw/orr-ont/wiki/specification"
    assert created.activity_key == "wiki:mmisw/orr-ont:965c341fec0317dac106cfbc55400ac1e1fe1003"
    # Two pages in one wiki push (crossbario/crossbar): one event, both pages at one commit.
    item = real_item("gharchive/2015-01-01-12.json.gz", "2489600554")
    both = from_events_api(item)
    assert (both.action, both.title, both.data["pages"]) == ("edited", "Wiki pages FAQ and 1 more edited", 2)
    assert both.activity_key == "wiki:crossbario/crossbar:c428fe18fbfe22ce9c268cddfcc7a51e014f9e64"
    # The gollum webhook: the same pages, with repository and sender; no time of its own.
    body = load("push.branch-created.json")
    body["repository"].update(full_name="crossbario/crossbar", html_url="https://github.com/crossbario/crossbar")
    body["sender"]["login"] = "oberstet"
    webhook = from_webhook("gollum", {"pages": item["payload"]["pages"], "repository": body["repository"],
                                      "sender": body["sender"]}, RECEIVED, "d-1")
    assert (webhook.event_id, webhook.activity_key, webhook.title) == ("d-1", both.activity_key, both.title)
    assert webhook.created_at == RECEIVED


def test_review_comments_before_2014_have_no_action_and_no_pull_request():
    item = next(i for i in real_items("events-api/octokit_rb_cassettes_events.json.gz")
                if i["type"] == "PullRequestReviewCommentEvent" and "action" not in i["payload"])
    event = from_events_api(item)
    assert (event.event_type, event.action, event.data["number"]) == (EventType.COMMENT, "created", 110)
    assert event.url == "https://github.com/MatthewMueller/cheerio/pull/110#discussion_r4730607"
    del item["payload"]["comment"]["pull_request_url"]
    with pytest.raises(Unusable, match="pull_request_url"):
        from_events_api(item)


# ------------------------------------------------------------- field values


def test_push_branch_created_webhook():
    event = hook("push.branch-created.json")
    assert event.title == "Initial commit"
    assert event.author == "Codertocat"
    assert event.url == "https://github.com/Codertocat/Hello-World/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    # repository.pushed_at is a unix integer here (1557933657): the push's own time.
    assert event.created_at == dt.datetime(2019, 5, 15, 15, 20, 57, tzinfo=UTC)
    assert event.data["sha"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert event.data["branch"] == "master" and event.data["ref"] == "refs/heads/master"
    assert event.data["commits"] == 1 and event.data["created"] is True and event.data["files_changed"] == 1


def test_push_time_falls_back_to_head_commit_then_received_at():
    body = load("push.branch-created.json")
    del body["repository"]["pushed_at"]
    assert hook("push.x", body).created_at == dt.datetime(2019, 5, 15, 15, 19, 25, tzinfo=UTC)
    body["head_commit"]["timestamp"] = "2019-05-15T10:19:25-05:00"
    assert hook("push.x", body).created_at == dt.datetime(2019, 5, 15, 15, 19, 25, tzinfo=UTC)
    body["head_commit"]["timestamp"] = None
    assert hook("push.x", body).created_at == RECEIVED


def test_push_legacy_events_api_shape_uses_commit_messages():
    item = json.loads((SAMPLES / "events-api/legacy-openapi-16.6.0/list-repo-events.json").read_text())[0]
    event = from_events_api(item)
    assert event.title == "commit"
    assert event.data["commits"] == 1 and event.data["distinct_commits"] == 1
    # Only API URLs in the payload: the html URL is built from the repository name.
    assert event.url == f"https://github.com/octocat/Hello-World/commit/{HEAD}"
    item["payload"]["commits"][0]["message"] = ""
    item["payload"]["size"] = 3
    assert from_events_api(item).title == "Pushed 3 commits to master"


def test_push_that_deletes_a_branch_is_the_branch_deletion():
    # No sample deletes a branch: built from push.tag-deleted (after = 000…, head_commit null) and delete.tag.
    push = load("push.tag-deleted.with-organization.json")
    push["ref"] = "refs/heads/feature/x"
    delete = load("delete.tag.json")
    delete.update(ref="feature/x", ref_type="branch")
    via_push, via_delete = hook("push.x", push), hook("delete.x", delete)
    assert via_push.activity_key == via_delete.activity_key == "delete:Codertocat/Hello-World:branch:feature/x"
    assert (via_push.event_type, via_push.action) == (EventType.DELETE, "branch")
    assert via_push.title == via_delete.title == "Branch feature/x deleted"
    # The current Events API shape says it with head = 000… only.
    api = from_events_api({"type": "PushEvent", "actor": {"login": "Codertocat"},
                           "repo": {"name": "Codertocat/Hello-World"}, "created_at": "2026-01-15T10:00:00Z",
                           "payload": {"ref": "refs/heads/feature/x", "head": ZERO, "before": HEAD}})
    assert api.activity_key == via_delete.activity_key


def test_branch_create_webhook():
    # No sample creates a branch: built from create.tag.
    body = load("create.tag.json")
    body.update(ref="release-2.x", ref_type="branch")
    event = hook("create.x", body)
    assert (event.event_type, event.action) == (EventType.CREATE, "branch")
    assert event.title == "Branch release-2.x created"
    assert event.url == "https://github.com/Codertocat/Hello-World/tree/release-2.x"
    assert event.created_at == RECEIVED  # a create payload carries no time of its own


def test_tag_create_and_push_agree():
    create, push = hook("create.tag.json"), hook("push.tag-created.json")
    assert create.title == push.title == "Tag simple-tag created"
    assert create.url == push.url == "https://github.com/Codertocat/Hello-World/tree/simple-tag"
    assert push.data["sha"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


@pytest.mark.parametrize(("ref", "before"), [("refs/tags/simple-tag", HEAD), ("refs/notes/commits", ZERO)])
def test_pushes_that_are_not_used(ref: str, before: str):
    body = load("push.tag-created.json")
    body.update(ref=ref, before=before, created=before == ZERO)
    assert hook("push.x", body) is None


def test_ghes_push_keeps_the_enterprise_host():
    event = hook("push.tag-created.ghes-3.5.json")
    assert event.url == "https://octocoders.github.io/Codertocat/Hello-World/tree/simple-tag"
    assert event.created_at == dt.datetime(2019, 5, 15, 19, 38, 23, tzinfo=UTC)  # pushed_at 1557949103


def test_pull_request_opened_and_null_body():
    for name in ("pull_request.opened.json", "pull_request.opened.with-null-body.json"):
        event = hook(name)
        assert event.title == "Update the README with new information."
        assert event.url == "https://github.com/Codertocat/Hello-World/pull/2"
        assert event.created_at == dt.datetime(2019, 5, 15, 15, 20, 33, tzinfo=UTC)
        assert event.data["number"] == 2 and event.data["additions"] == 1 and event.data["deletions"] == 1


def test_pull_request_closed_unmerged_and_merged():
    closed = hook("pull_request.closed.json")
    assert closed.action == "closed" and closed.data["merged"] is False
    assert closed.created_at == dt.datetime(2019, 5, 15, 15, 21, 18, tzinfo=UTC)  # closed_at
    # No sample has a merged PR: built from the closed one the way GitHub sends a merge.
    body = load("pull_request.closed.json")
    body["pull_request"].update(merged=True, merged_at="2019-05-15T15:21:17.000+00:00",
                                merged_by=body["sender"])
    merged = hook("pull_request.closed.json", body)
    assert merged.action == "merged" and merged.data["merged"] is True
    assert merged.weight_key == "pull_request.merged"
    assert merged.created_at == dt.datetime(2019, 5, 15, 15, 21, 17, tzinfo=UTC)  # merged_at
    assert merged.activity_key == closed.activity_key == "pull_request:Codertocat/Hello-World:2:closed"


def test_pull_request_minimal_events_api_payload():
    # The current PullRequestEvent payload ("pull-request-minimal" schema): no title, html_url or merged.
    item = {"id": "1", "type": "PullRequestEvent", "actor": {"login": "Codertocat"},
            "repo": {"id": 1, "name": "Codertocat/Hello-World",
                     "url": "https://api.github.com/repos/Codertocat/Hello-World"},
            "payload": {"action": "closed", "number": 2, "pull_request": {
                "id": 279147437, "number": 2, "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/2",
                "head": {"ref": "changes", "sha": "ec26c3e5", "repo": {}},
                "base": {"ref": "master", "sha": "f95f852b", "repo": {}}}},
            "public": True, "created_at": "2019-05-15T10:21:18-05:00"}
    event = from_events_api(item)
    assert event.title == "Pull request #2"
    assert event.url == "https://github.com/Codertocat/Hello-World/pull/2"
    assert event.action == "closed" and "merged" not in event.data  # unknown, not False
    assert event.created_at == dt.datetime(2019, 5, 15, 15, 21, 18, tzinfo=UTC)
    assert event.activity_key == hook("pull_request.closed.json").activity_key


def test_pull_request_merge_told_by_merged_at_alone():
    # Some PR objects (older archives, issue-embedded PRs) carry merged_at but no merged flag.
    body = load("pull_request.closed.json")
    del body["pull_request"]["merged"]
    assert hook("pull_request.x", body).action == "closed"
    body["pull_request"]["merged_at"] = "2019-05-15T15:21:18Z"
    event = from_events_api(_envelope("pull_request", body))
    assert event.action == "merged" and event.data["merged"] is True
    assert event.title == "Update the README with new information."


def test_issues_null_body_transfer_and_closed():
    assert hook("issues.opened.with-null-body.json").title == "Spelling error in the README file"
    assert hook("issues.opened.after-transfer.json").data["transferred_from"] == "octo-org/octo-repo"
    reopened = hook("issues.reopened.json")
    assert reopened.created_at == dt.datetime(2021, 10, 11, 16, 40, 56, tzinfo=UTC)  # updated_at
    # No sample closes an issue: built from issues.reopened.
    body = load("issues.reopened.json")
    body["action"] = "closed"
    body["issue"].update(state="closed", closed_at="2021-10-12T09:00:00Z", updated_at="2021-10-12T09:00:00Z")
    closed = hook("issues.closed.json", body)
    assert (closed.event_type, closed.action) == (EventType.ISSUE, "closed")
    assert closed.activity_key == "issue:Codertocat/Hello-World:1:closed"
    assert closed.url == "https://github.com/Codertocat/Hello-World/issues/1"
    assert closed.created_at == dt.datetime(2021, 10, 12, 9, 0, tzinfo=UTC)


def test_issue_comment():
    event = hook("issue_comment.created.json")
    assert event.title == "Comment on: Spelling error in the README file"
    assert event.url == "https://github.com/Codertocat/Hello-World/issues/1#issuecomment-492700400"
    assert event.created_at == dt.datetime(2019, 5, 15, 15, 20, 21, tzinfo=UTC)
    assert event.data["issue_number"] == 1


def test_review_with_null_body():
    event = hook("pull_request_review.submitted.json")
    assert event.title == "Review (commented): Update the README with new information."
    assert event.url == "https://github.com/Codertocat/Hello-World/pull/2#pullrequestreview-237895671"
    assert event.created_at == dt.datetime(2019, 5, 15, 15, 20, 38, tzinfo=UTC)


def test_release_with_null_name_and_named():
    event = hook("release.published.json")
    assert event.title == "Release 0.0.1"  # name is null: the tag
    assert event.url == "https://github.com/Codertocat/Hello-World/releases/tag/0.0.1"
    assert event.created_at == dt.datetime(2019, 5, 15, 15, 20, 53, tzinfo=UTC)  # published_at
    assert event.data["tag_name"] == "0.0.1"
    body = load("release.published.json")
    body["release"]["name"] = "v1.2"
    assert hook("release.x", body).title == "Release v1.2"
    body["action"] = "created"  # fires for the same release as published
    assert hook("release.x", body) is None


def test_star_and_watch():
    star, watch = hook("star.created.json"), hook("watch.started.json")
    assert star.title == watch.title == "Starred Codertocat/Hello-World"
    assert star.url == "https://github.com/Codertocat/Hello-World"
    assert star.created_at == dt.datetime(2019, 5, 15, 15, 20, 40, tzinfo=UTC)  # starred_at
    assert watch.created_at == RECEIVED  # watch carries no time


def test_fork_by_an_organization():
    event = hook("fork.json")
    assert event.title == "Forked to Octocoders/Hello-World"
    assert event.author == "Octocoders" and event.is_bot is False
    assert event.url == "https://github.com/Octocoders/Hello-World"
    assert event.created_at == dt.datetime(2019, 5, 15, 15, 20, 42, tzinfo=UTC)  # forkee.created_at
    assert event.data == {"forkee": "Octocoders/Hello-World", "forkee_owner_type": "Organization"}


def test_discussion_with_offset_timestamps():
    event = hook("discussion.created.json")
    assert event.title == "Welcome to discussions!"
    assert event.url == "https://github.com/octo-org/octo-repo/discussions/90"
    assert event.created_at == dt.datetime(2021, 3, 29, 14, 16, 8, tzinfo=UTC)
    body = load("discussion.created.json")
    body["discussion"]["created_at"] = body["discussion"]["category"]["created_at"]  # "…12:41:54.000-05:00"
    assert hook("discussion.x", body).created_at == dt.datetime(2021, 3, 24, 17, 41, 54, tzinfo=UTC)


def test_member_public_and_delete():
    edited = hook("member.edited.json")
    assert edited.title == "octocat's collaborator permission changed"
    assert edited.data["old_permission"] == "write"
    public = hook("public.json")
    assert public.title == "Codertocat/Hello-World made public"
    assert public.url == "https://github.com/Codertocat/Hello-World"
    deleted = hook("delete.tag.json")
    assert deleted.title == "Tag simple-tag deleted"


def test_bots():
    assert hook("issues.opened.json").is_bot is False
    body = load("issues.opened.json")
    body["sender"] = load("check_suite.rerequested.bot-sender.json")["sender"]  # type: Bot
    event = hook("issues.opened.json", body)
    assert event.is_bot is True and event.author == "octocoders-linter[bot]"
    body["sender"] = {"login": "octocoders-linter", "type": "Bot"}  # the type alone is enough
    assert hook("issues.opened.json", body).is_bot is True
    body["sender"] = {"login": "dependabot[bot]", "type": "User"}
    assert hook("issues.opened.json", body).is_bot is True
    body["sender"] = {"login": "robotframework", "type": "User"}
    assert hook("issues.opened.json", body).is_bot is False
    item = json.loads((SAMPLES / "events-api" / "list-repo-events.json").read_text())[0]
    item["actor"]["login"] = "dependabot[bot]"  # Events API actors have no type
    assert from_events_api(item).is_bot is True


def test_event_field_order():
    """normalize builds Event positionally (it is faster): reordering its fields must fail here."""
    assert [field.name for field in attrs.fields(Event)] == [
        "event_id", "repo_full_name", "event_type", "title", "author", "url", "created_at",
        "action", "is_bot", "data", "source", "activity_key"]


def test_naive_received_at_is_taken_as_utc():
    event = hook("watch.started.json", received_at=dt.datetime(2026, 1, 15, 10, 30))
    assert event.created_at == dt.datetime(2026, 1, 15, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(("api_url", "web"), [
    ("https://api.github.com/repos/octocat/Hello-World", "https://github.com"),
    ("https://ghe.example.com/api/v3/repos/octocat/Hello-World", "https://ghe.example.com"),
    ("https://api.acme.ghe.com/repos/octocat/Hello-World", "https://acme.ghe.com"),
    ("https://[broken/repos/octocat/Hello-World", "https://github.com"),
    (None, "https://github.com"),
])
def test_events_api_urls_use_the_web_host_of_the_api_host(api_url, web):
    item = json.loads((SAMPLES / "events-api" / "list-repo-events.json").read_text())[0]
    item["repo"]["url"] = api_url
    assert from_events_api(item).url == f"{web}/octocat/Hello-World/commit/{HEAD}"


# ------------------------------------------------------------------ times


@pytest.mark.parametrize(("value", "expected"), [
    ("2019-05-15T15:20:41Z", dt.datetime(2019, 5, 15, 15, 20, 41, tzinfo=UTC)),
    ("2019-05-15T15:20:41+00:00", dt.datetime(2019, 5, 15, 15, 20, 41, tzinfo=UTC)),
    ("2021-03-24T12:41:54.000-05:00", dt.datetime(2021, 3, 24, 17, 41, 54, tzinfo=UTC)),
    ("2021-03-30T16:09:00.000-04:00", dt.datetime(2021, 3, 30, 20, 9, tzinfo=UTC)),
    ("2019-05-15T15:20:41.123Z", dt.datetime(2019, 5, 15, 15, 20, 41, 123000, tzinfo=UTC)),
    ("2019-05-15T15:20:41", dt.datetime(2019, 5, 15, 15, 20, 41, tzinfo=UTC)),
    (1557933657, dt.datetime(2019, 5, 15, 15, 20, 57, tzinfo=UTC)),
    (1557933657.5, dt.datetime(2019, 5, 15, 15, 20, 57, 500000, tzinfo=UTC)),
    ("1557933657", dt.datetime(2019, 5, 15, 15, 20, 57, tzinfo=UTC)),
    (dt.datetime(2019, 5, 15, 17, 20, 57, tzinfo=dt.timezone(dt.timedelta(hours=2))),
     dt.datetime(2019, 5, 15, 15, 20, 57, tzinfo=UTC)),
    (None, None), ("", None), ("  ", None), ("yesterday", None), (True, None), ([], None),
    (10 ** 20, None), (float("nan"), None),
])
def test_parse_time(value, expected):
    parsed = parse_time(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


#: GitHub's usual forms take parse_time's fast path; the rest (whitespace, other offsets,
#: unix seconds, nonsense) fall through to the general path.  Both must agree.
_FAST = ["2019-05-15T15:20:41Z", "2019-05-15T15:20:41.123456Z", "2019-05-15T15:20:41+00:00",
         "2019-05-15 15:20:41Z", "2020-02-29T23:59:59Z", "0001-01-01T00:00:00Z"]
_GENERAL = [" 2019-05-15T15:20:41Z", "2019-05-15T15:20:41Z\n", "2019-05-15T15:20:41-05:00",
            "2019-05-15T15:20:41", "1557933657"]
_NEITHER = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2019-02-29T00:00:00Z",
            "2019-05-15T15:20:41ZZ", "Z", "T"]


@pytest.mark.parametrize("text", _FAST + _GENERAL + _NEITHER)
def test_parse_time_fast_path_agrees_with_the_general_path(text):
    from osintd.normalize import _parse_time_generally

    parsed = parse_time(text)
    assert parsed == _parse_time_generally(text)
    assert (parsed is None) == (text in _NEITHER)
    assert parsed is None or parsed.tzinfo is UTC


def test_parse_time_remembers_a_bounded_number_of_timestamps():
    from osintd import normalize

    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    for _ in range(2):  # the second round is answered from memory, where memory holds it
        for second in range(normalize._RECENT_TIMES_MAX + 100):
            expected = start + dt.timedelta(seconds=second)
            assert parse_time(expected.strftime("%Y-%m-%dT%H:%M:%SZ")) == expected
            assert len(normalize._RECENT_TIMES) <= normalize._RECENT_TIMES_MAX
    assert parse_time("2026-03-01T00:00:00Z") is parse_time("2026-03-01T00:00:00Z")


@pytest.mark.parametrize("text", ["2019-05-15T15:20:41Z", " 2019-05-15T15:20:41Z ", "2019-05-15T10:20:41-05:00"])
def test_events_api_created_at_in_any_form(text):
    assert from_events_api(_api(created_at=text)).created_at == dt.datetime(2019, 5, 15, 15, 20, 41, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2019-02-29T00:00:00Z", "2019-05-15T25:00:00Z", "0001-01-01T00:00:00+01:00"])
def test_events_api_bad_created_at_is_unusable(text):
    with pytest.raises(Unusable, match="created_at"):
        from_events_api(_api(created_at=text))


# -------------------------------------------------------------- bad input


def _api(**changes) -> dict:
    item = json.loads((SAMPLES / "events-api" / "list-repo-events.json").read_text())[0]
    item.update(changes)
    return item


@pytest.mark.parametrize(("item", "message"), [
    ("not an object", "not an object"),
    ({}, "type"),
    (_api(type=None), "type"),
    (_api(repo=None), "repo"),
    (_api(repo={"id": 1}), "repo.name"),
    (_api(repo={"name": "no-slash"}), "owner/name"),
    (_api(repo={"name": 42}), "repo.name"),
    (_api(actor={"id": 1}), "login"),
    (_api(payload=["not", "a", "dict"]), "payload"),
    (_api(payload={"ref": "refs/heads/x"}), "head"),
    (_api(created_at="last tuesday"), "created_at"),
    (_api(created_at=None), "created_at"),
    (_api(type="IssuesEvent", payload={"action": "opened", "issue": {"number": "1"}}), "number"),
    (_api(type="PullRequestEvent", payload={"action": "opened", "pull_request": "2"}), "pull_request"),
    (_api(type="ReleaseEvent", payload={"action": "published", "release": {"id": 1}}), "tag_name"),
])
def test_malformed_events_api_items_are_unusable(item, message):
    with pytest.raises(Unusable, match=message):
        from_events_api(item)


def _hook_body(name: str, **changes) -> dict:
    body = load(name)
    body.update(changes)
    return body


@pytest.mark.parametrize(("event_name", "payload", "message"), [
    ("push", ["a", "list"], "not an object"),
    ("push", _hook_body("push.branch-created.json", repository=None), "repository"),
    ("push", _hook_body("push.branch-created.json", repository={"full_name": None}), "full_name"),
    ("push", _hook_body("push.branch-created.json", sender="Codertocat"), "sender"),
    ("push", _hook_body("push.branch-created.json", ref=None), "ref"),
    ("push", _hook_body("push.branch-created.json", commits="many"), "commits"),
    ("push", _hook_body("push.branch-created.json", head_commit=[]), "head_commit"),
    ("pull_request", _hook_body("pull_request.opened.json", number=None, pull_request={}), "number"),
    ("issue_comment", _hook_body("issue_comment.created.json", comment={"id": "x"}), "id"),
    ("fork", _hook_body("fork.json", forkee={"full_name": 7}), "forkee"),
    ("create", _hook_body("create.tag.json", ref_type=None), "ref_type"),
])
def test_malformed_webhooks_are_unusable(event_name, payload, message):
    with pytest.raises(Unusable, match=message):
        from_webhook(event_name, payload, RECEIVED)


def test_bad_arguments_are_unusable():
    with pytest.raises(Unusable):
        from_webhook(None, load("watch.started.json"), RECEIVED)
    with pytest.raises(Unusable):
        from_webhook("watch", load("watch.started.json"), "2026-01-15")
    assert issubclass(Unusable, ValueError)


class _Hostile(Mapping):
    """A mapping that fails the way a buggy caller's object might: with a TypeError."""

    def __init__(self, data: dict, bad_key: str) -> None:
        self._data, self._bad_key = data, bad_key

    def __getitem__(self, key):
        if key == self._bad_key:
            raise TypeError(f"cannot read {key}")
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


def test_other_exceptions_are_wrapped_in_unusable():
    with pytest.raises(Unusable, match="TypeError: cannot read ref"):
        from_webhook("push", _Hostile(load("push.branch-created.json"), "ref"), RECEIVED)
    with pytest.raises(Unusable, match="TypeError: cannot read payload"):
        from_events_api(_Hostile(_api(), "payload"))


def test_odd_file_lists_in_commits_are_ignored():
    body = load("push.branch-created.json")
    body["commits"][0]["added"] = "README.md"  # a string, not a list: not 9 files
    assert "files_changed" not in hook("push.x", body).data


def test_unused_types_are_none_not_errors():
    assert from_webhook("ping", {"zen": "Keep it logically awesome."}, RECEIVED) is None
    assert from_webhook("check_suite", load("check_suite.rerequested.bot-sender.json"), RECEIVED) is None
    assert from_events_api(_api(type="GollumEvent", payload={"pages": []})) is None  # no page: nothing happened
    for kind in ("GistEvent", "FollowEvent", "DownloadEvent", "TeamAddEvent", "SponsorshipEvent"):
        assert from_events_api(_api(type=kind, payload={})) is None


_GARBAGE = (None, 42, "text", [], {}, [{}], {"x": 1}, True, -1.5)


def _mutations(body: dict):
    """``body`` with one field (top level or one level down) deleted or replaced by garbage."""
    for key in list(body):
        without = dict(body)
        del without[key]
        yield without
        for junk in _GARBAGE:
            yield {**body, key: junk}
        if isinstance(body[key], dict):
            for inner in list(body[key]):
                if inner in ("owner", "user", "_links", "permissions"):
                    continue
                for junk in (None, 7, "x", []):
                    yield {**body, key: {**body[key], inner: junk}}


@pytest.mark.parametrize("path", WEBHOOK_FILES, ids=lambda p: p.name)
def test_mutated_webhooks_give_an_event_none_or_unusable(path: Path):
    body = json.loads(path.read_text())
    for mutated in _mutations(body):
        try:
            event = from_webhook(path.name.split(".")[0], mutated, RECEIVED)
        except Unusable:
            continue
        if event is not None:
            assert_well_formed(event)


@pytest.mark.parametrize(("name", "index", "item"), api_items()[:4], ids=lambda v: str(v)[-40:])
def test_mutated_events_api_items_give_an_event_none_or_unusable(name: str, index: int, item: dict):
    for mutated in _mutations(copy.deepcopy(item)):
        try:
            event = from_events_api(mutated)
        except Unusable:
            continue
        if event is not None:
            assert_well_formed(event)


@pytest.mark.parametrize("text", ["main", "feature/x-y_z.1~", "v1.0+build", "a b", "ü", "%41", "", "a/b#c"])
@pytest.mark.parametrize("safe", ["", "/"])
def test_quote_fast_path_is_urllib_quote(text, safe):
    import urllib.parse

    from osintd.normalize import _quote

    assert _quote(text, safe) == urllib.parse.quote(text, safe=safe)


_WHITESPACE = [chr(i) for i in range(0x3001) if chr(i).isspace()]


@pytest.mark.parametrize("text", ["Fix it", "", " ", "a  b", " a", "a ", "naïve café", "x\u200by", "tab\there",
                                  *(f"a{ws}b" for ws in _WHITESPACE), *(f"{ws}a" for ws in _WHITESPACE)])
def test_one_line_fast_path_is_split_and_join(text):
    from osintd.normalize import _one_line

    assert _one_line(text) == " ".join(text.split())
