"""One normalizer: GitHub JSON (Events API items and webhook bodies) to ``Event``.

Owns: the mapping of both GitHub shapes to :class:`osintd.models.Event` —
which GitHub types and actions osintd uses, the ``event_type``/``action``,
``title``, ``author``, ``url``, ``created_at``, ``is_bot`` and ``data`` of each,
the ``event_id`` and ``activity_key`` rules below, and timestamp parsing
(:func:`parse_time`).
Must not: do any I/O (no network, no files, no clock), score, dedupe or
announce.  Every function here is pure (parse_time remembers recent timestamps,
which changes no result).

Entry points
------------
* :func:`from_events_api` takes one Events API item (also one GH Archive line).
* :func:`from_webhook` takes one webhook delivery body and the values of its
  ``X-GitHub-Event`` and ``X-GitHub-Delivery`` headers.

Both return ``None`` for a type or action osintd does not use, and raise
:class:`Unusable` (a ``ValueError``) for input that is malformed: never any
other exception.  Callers count both and carry on.

``event_id`` and ``activity_key``
---------------------------------
``event_id`` is GitHub's own identity of what arrived: the Events API item's
``id`` (also a GH Archive line's), or the webhook's ``X-GitHub-Delivery``.  Two
items with distinct ids are two events, even when they look alike: on real GH
Archive hours, one push in five has the head SHA of another push to another
ref, branches and tags are deleted and re-created under one name, pull
requests closed, reopened and closed again, stars removed and given again.
Only an item without an id (old archives, a webhook without the header) gets
its activity key as its id.

``activity_key`` names the activity, the same whichever way it arrives, so
that :mod:`osintd.identity` can merge a webhook delivery with the Events API
item for the same activity (the rule and its horizon are there).  It holds
everything that tells two activities apart that both shapes carry; ``:``
separates the parts (no repository name, login or git ref can contain one):

=============================  ==============================================
commit (push to a branch)      ``commit:<owner/repo>:<branch>:<head sha>``
create                         ``create:<owner/repo>:<tag|branch>:<short ref>``,
                               ``create:<owner/repo>:repository``
delete                         ``delete:<owner/repo>:<tag|branch>:<short ref>``
pull_request                   ``pull_request:<owner/repo>:<number>:<GitHub action>``
                               (the raw action: a merge is ``…:closed`` although
                               its ``action`` is ``merged``: the Events API's
                               minimal payload cannot tell)
issue                          ``issue:<owner/repo>:<number>:<action>``
discussion                     ``discussion:<owner/repo>:<number>:<action>``
comment                        ``comment:issue:<id>`` (issue and PR conversation),
                               ``comment:pr:<id>`` (PR diff/review comment),
                               ``comment:commit:<id>``, ``comment:discussion:<id>``
                               (GitHub's own comment ids; four id spaces)
review                         ``review:<review id>``
release                        ``release:<release id>``
star                           ``star:<owner/repo>:<login>``
fork                           ``fork:<forkee full name>``
member                         ``member:<owner/repo>:<login>:<action>``
public                         ``public:<owner/repo>``
wiki                           ``wiki:<owner/repo>:<wiki commit sha>[,<sha>…]``
=============================  ==============================================

Left out on purpose: a push's ``before`` (for a push that creates its branch
the webhook says ``000…`` while the Events API names the commit the branch
started from: not one of the 9,291 real PushEvents in ``shared/real-github``
has a zero ``before``, though hundreds follow the CreateEvent of their
branch), and the object's own timestamps (the current Events API's
pull request, create and delete payloads carry none).  Repeats of one key are
not lost for that: they are told apart by counting (see ``identity``).

Decisions on GitHub's quirks
----------------------------
* Push.  The current Events API shape has only ``ref``/``head``/``before``;
  the legacy one and the webhook also have ``commits`` (the webhook says
  ``after`` for ``head``).  A push to a branch is a ``commit`` event titled by
  the head commit's first line when a message is known, else "Pushed N commits
  to <branch>" or "Pushed to <branch>".  A push that deletes a ref (``after``/
  ``head`` all zeros, ``deleted: true``, ``head_commit: null``) is a ``delete``
  event with the activity key of the ``delete`` webhook/DeleteEvent GitHub
  also sends, and ``data.via`` ``push``: identity merges the two.  Likewise a
  push that creates a tag (``refs/tags/…`` with ``before`` all zeros) is a
  ``create`` event (action ``tag``) keyed like the CreateEvent (GitHub sends
  the push and the create webhook for one tag, and the Events API only the
  CreateEvent: none of the real PushEvents in the shared data is to a tag or
  deletes a ref); a push that moves an existing tag is skipped.  A push that
  creates a branch (``before`` all zeros) is an ordinary ``commit`` event
  (data ``created: true``); GitHub's separate ``create`` event for the
  branch is kept as well (another activity key).  Pushes to refs other than
  ``refs/heads/`` and ``refs/tags/`` are skipped.
* ``pull_request``: ``opened``, ``reopened`` and ``closed`` are used; a
  ``closed`` with ``merged: true`` (or a ``merged_at``) has action ``merged``,
  else ``closed``.  The Events API's minimal PR payload says nothing about the
  merge: its closes stay ``closed`` and ``data`` has no ``merged`` (unknown).
  ``synchronize`` and all other actions are skipped: new commits on a PR
  arrive as their own push.
* ``issues``: ``opened``, ``closed``, ``reopened``; others skipped.
* Comments: only ``created`` (``edited``/``deleted`` skipped).
* ``pull_request_review``: webhook ``submitted`` and Events API ``created``;
  ``action`` is the review state (``approved``, ``changes_requested``,
  ``commented`` …), lower-cased.
* ``release``: only ``published`` (``created``/``released``/``prereleased``
  fire for the same release); the title uses ``name``, or ``tag_name`` when
  the name is null or empty.
* Stars: ``watch``/WatchEvent ``started`` and ``star.created`` are ``star``
  (action ``started``); ``star.deleted`` is skipped.
* ``discussion``: ``created`` and ``answered``; ``discussion_comment``
  ``created`` is a ``comment``.  ``member``: ``added``, ``removed``,
  ``edited``.  ``create``/``delete`` of a tag or branch, ``create`` of a
  repository (whose legacy ``ref`` is null).
* ``gollum``/GollumEvent (wiki pages created or edited, one event for all
  the pages of one wiki push) is a ``wiki`` event, action ``created`` if any
  page was created, else ``edited``: people writing documentation are real
  activity (scored low, like a comment).  PullRequestReviewCommentEvent is a
  ``comment`` (above).
* Anything else is skipped: ``check_suite``, ``ping`` …, and the old Events
  API types that are not activity in a repository (GistEvent, FollowEvent,
  DownloadEvent, TeamAddEvent …); the sources count what they skip by type.
* Authors: the webhook ``sender``/Events API ``actor`` login.  ``is_bot`` is
  ``sender.type == "Bot"`` or a login ending in ``[bot]`` (Events API actors
  have no type).  An Organization sender (forks) is not a bot.
* Null bodies, null release names, missing ``organization``/``org`` and an
  ``enterprise`` object change nothing.  URLs: the payload's ``html_url`` when
  it has one (so GitHub Enterprise hosts are kept), else built from the
  repository name on the web host that matches the API host
  (``api.github.com`` → ``github.com``).
* ``created_at``: Events API items use their ``created_at``.  Webhooks use the
  time of the activity inside the payload (per type: ``merged_at``/
  ``closed_at``/``created_at``/``updated_at``, ``comment.created_at``,
  ``review.submitted_at``, ``release.published_at``, ``starred_at``,
  ``forkee.created_at``, ``repository.pushed_at`` (a unix integer) then
  ``head_commit.timestamp`` for pushes …) and fall back to ``received_at``
  (watch, create, delete, member, public and gollum carry no time of their
  own).
  Always timezone-aware UTC.
* ``data`` holds JSON primitives only, and leaves out what the payload does
  not say (``None``): e.g. ``sha``/``branch``/``ref``/``before``/``commits``/
  ``created``/``files_changed`` for pushes, ``number``/``merged``/``state``/
  ``head``/``base``/``additions``/``deletions`` for PRs, ``tag_name`` for
  releases, ``ref``/``ref_type`` for create/delete, ``forkee`` for forks.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Callable, Mapping  # abc, not typing: isinstance on these is much cheaper
from typing import Any

import attrs

from osintd.models import Event, EventType

__all__ = ["Unusable", "from_events_api", "from_webhook", "parse_time"]

UTC = dt.UTC
ZERO_SHA = "0" * 40
_TITLE_MAX = 300
#: Lengths beyond what GitHub allows (owner 39 + "/" + name 100; logins 39, "[bot]" names
#: longer) or any real URL or value needs: a longer name or login makes the item
#: unusable, a longer URL or data string is cut, before anything scores, logs or sends it
#: (a replay line with a 200 MB field became one 419 MB frame).
_REPO_NAME_MAX = 140
_LOGIN_MAX = 100
_URL_MAX = 2048
_DATA_STRING_MAX = 1024

# The builders' event types as plain globals: ``EventType.X`` costs ~50 ns a lookup (EnumType
# has a ``__getattr__``, which keeps 3.11 from caching class attribute lookups).
COMMIT = EventType.COMMIT
PULL_REQUEST = EventType.PULL_REQUEST
ISSUE = EventType.ISSUE
COMMENT = EventType.COMMENT
REVIEW = EventType.REVIEW
RELEASE = EventType.RELEASE
STAR = EventType.STAR
FORK = EventType.FORK
CREATE = EventType.CREATE
DELETE = EventType.DELETE
DISCUSSION = EventType.DISCUSSION
MEMBER = EventType.MEMBER
PUBLIC = EventType.PUBLIC
WIKI = EventType.WIKI

#: Events API ``type`` → the webhook event name that carries the same activity.
EVENTS_API_TYPES: Mapping[str, str] = {
    "PushEvent": "push",
    "PullRequestEvent": "pull_request",
    "IssuesEvent": "issues",
    "IssueCommentEvent": "issue_comment",
    "CommitCommentEvent": "commit_comment",
    "PullRequestReviewEvent": "pull_request_review",
    "PullRequestReviewCommentEvent": "pull_request_review_comment",
    "ReleaseEvent": "release",
    "WatchEvent": "watch",
    "ForkEvent": "fork",
    "CreateEvent": "create",
    "DeleteEvent": "delete",
    "DiscussionEvent": "discussion",
    "MemberEvent": "member",
    "PublicEvent": "public",
    "GollumEvent": "gollum",
}


class Unusable(ValueError):
    """The input is not a GitHub event osintd can read (missing or mistyped fields)."""


# ------------------------------------------------------------------ time


_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def parse_time(value: object) -> dt.datetime | None:
    """A timezone-aware UTC datetime from any timestamp GitHub sends, else ``None``.

    Accepts ISO 8601 strings with ``Z``, ``+00:00`` or ``-05:00`` offsets and
    any fraction (``.000``), unix seconds as int, float or digit string (push
    webhooks' ``repository.pushed_at``), and datetimes.  Naive values are taken
    as UTC.  ``None``, empty, unparseable or out-of-range values give ``None``.
    """
    if type(value) is str:
        parsed = _RECENT_TIMES.get(value)
        if parsed is not None:
            return parsed
        # GitHub's own form (``2019-05-15T15:20:41Z``) comes out of fromisoformat already in
        # UTC, and the general path below would return that very datetime: skip the rest.
        # fromisoformat accepts no surrounding whitespace, so not stripping changes nothing.
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is UTC:
                if len(_RECENT_TIMES) >= _RECENT_TIMES_MAX:
                    _RECENT_TIMES.clear()
                _RECENT_TIMES[value] = parsed
                return parsed
    return _parse_time_generally(value)


#: GitHub-form timestamps parse_time saw lately, and their datetimes: events come in bursts
#: that share a second, and a shared (immutable) datetime is one allocation less per event.
#: Memoisation only: parse_time still returns what it would without it.  Cleared when full.
_RECENT_TIMES: dict[str, dt.datetime] = {}
_RECENT_TIMES_MAX = 4096


def _parse_time_generally(value: object) -> dt.datetime | None:
    try:
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, (int, float)):
            return dt.datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            if "T" not in text and _NUMBER.fullmatch(text):  # ISO 8601 first: by far the most common
                return dt.datetime.fromtimestamp(float(text), UTC)
            parsed = dt.datetime.fromisoformat(text)
        else:
            return None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None


# ------------------------------------------------------------ entry points


def from_events_api(item: Mapping[str, Any], source: str = "unknown") -> Event | None:
    """The ``Event`` for one Events API item, ``None`` if osintd does not use it.

    ``source`` names who fetched it (``poll``, ``replay``) for the metrics.
    Raises :class:`Unusable` (and nothing else) for a malformed item.
    """
    try:  # here rather than in a shared wrapper: that call cost ~100 ns an event
        return _from_events_api(item, source)
    except Unusable:
        raise
    except _SLIPS as exc:
        raise _malformed("Events API item", exc) from exc


def from_webhook(event_name: str, payload: Mapping[str, Any], received_at: dt.datetime,
                 delivery: str | None = None) -> Event | None:
    """The ``Event`` for one webhook delivery body, ``None`` if osintd does not use it.

    ``event_name`` is the ``X-GitHub-Event`` header, ``delivery`` the
    ``X-GitHub-Delivery`` header (the event's id; without it, the activity key
    is); ``received_at`` is the fallback time for payloads that carry no time of
    their own.  Raises :class:`Unusable` (and nothing else) for a malformed body.
    """
    try:
        return _from_webhook(event_name, payload, received_at, delivery)
    except Unusable:
        raise
    except _SLIPS as exc:
        raise _malformed(f"{event_name!r} webhook", exc) from exc


#: What reading odd input can raise besides Unusable; the entry points turn it into Unusable.
_SLIPS = (KeyError, TypeError, AttributeError, ValueError, IndexError, OverflowError, RecursionError)


def _malformed(what: str, exc: BaseException) -> Unusable:
    return Unusable(f"malformed {what}: {type(exc).__name__}: {_cut(str(exc), 200)}")


# Not frozen: it lives for one call and nobody keeps it, and a frozen attrs class sets each
# field through object.__setattr__, which made building one cost twice as much (~700 ns).
@attrs.define
class _Context:
    kind: str                       # webhook event name (Events API types translated)
    payload: Mapping[str, Any]
    repo: str                       # owner/name
    repo_url: str                   # html URL of the repository
    web_base: str                   # https://github.com or a GHES host
    author: str
    is_bot: bool
    fallback_time: dt.datetime      # Events API: created_at; webhook: received_at
    fixed_time: bool                # Events API: always fallback_time, never a payload time
    source: str = "unknown"         # Event.source
    github_id: str | None = None    # the Events API id or X-GitHub-Delivery; None: unknown

    def time(self, *candidates: object) -> dt.datetime:
        """The event time: fixed for Events API items, else the first parseable candidate."""
        if not self.fixed_time:
            for candidate in candidates:
                parsed = parse_time(candidate)
                if parsed is not None:
                    return parsed
        return self.fallback_time

    def event(self, key: str, event_type: EventType, title: str, url: str,
              created_at: dt.datetime, action: str | None = None,
              data: Mapping[str, Any] | None = None) -> Event:
        """The Event; ``key`` is its activity key, and its id too when GitHub gave none."""
        # Positional, in Event's field order (test_event_field_order pins it): keyword
        # arguments cost ~270 ns more per event.
        if len(url) > _URL_MAX:
            url = self.repo_url if len(self.repo_url) <= _URL_MAX else f"https://github.com/{self.repo}"
        return Event(self.github_id or key, self.repo, event_type, _one_line(title), self.author, url,
                     created_at, action, self.is_bot, _clean(data or {}), self.source, _cut(key, _DATA_STRING_MAX))


def _from_events_api(item: Mapping[str, Any], source: str) -> Event | None:
    if type(item) is not dict and not isinstance(item, Mapping):
        raise Unusable(f"Events API item is a {type(item).__name__}, not an object")
    type_name = item.get("type")
    kind = EVENTS_API_TYPES.get(type_name) if isinstance(type_name, str) else None
    if kind is None:
        _req_str(item, "type", "Events API item")  # raises for a missing or mistyped type
        return None  # a type osintd does not use
    # The three objects are dicts nearly always; _req_obj (one call each) checks the rest.
    repo_obj = item.get("repo")
    if type(repo_obj) is not dict:
        repo_obj = _req_obj(item, "repo", "Events API item")
    repo = _repo_name(repo_obj.get("name"), "repo.name")
    actor = item.get("actor")
    if type(actor) is not dict:
        actor = _req_obj(item, "actor", "Events API item")
    login = _req_login(actor, "actor")
    created_at = parse_time(item.get("created_at"))
    if created_at is None:
        raise Unusable(f"Events API item has no usable created_at: {_shown(item.get('created_at'))}")
    payload = item.get("payload")
    if type(payload) is not dict:
        payload = _req_obj(item, "payload", "Events API item")
    web_base = _web_base_from_api_url(repo_obj.get("url"))
    github_id = item.get("id")
    if type(github_id) is not str:  # ids are strings; very old archives had integers
        github_id = str(github_id) if type(github_id) is int else None
    # Positional, in _Context's field order: keyword arguments cost ~200 ns more per event.
    context = _Context(kind, payload, repo, f"{web_base}/{repo}", web_base, login,
                       _is_bot(login, actor.get("type")), created_at, True, source, github_id or None)
    return _BUILDERS[kind](context)


def _from_webhook(event_name: str, payload: Mapping[str, Any], received_at: dt.datetime,
                  delivery: str | None) -> Event | None:
    if not isinstance(event_name, str):
        raise Unusable(f"event name is a {type(event_name).__name__}, not a string")
    if not isinstance(received_at, dt.datetime):
        raise Unusable(f"received_at is a {type(received_at).__name__}, not a datetime")
    if not isinstance(payload, Mapping):
        raise Unusable(f"webhook payload is a {type(payload).__name__}, not an object")
    kind = event_name.strip().lower()
    builder = _BUILDERS.get(kind)
    if builder is None:
        return None
    received = parse_time(received_at)
    if received is None:
        raise Unusable(f"received_at {received_at!r} is out of range")
    repository = _req_obj(payload, "repository", "webhook payload")
    repo = _repo_name(repository.get("full_name"), "repository.full_name")
    sender = _req_obj(payload, "sender", "webhook payload")
    login = _req_login(sender, "sender")
    repo_url = _http_url(repository.get("html_url"))
    if repo_url is None:
        web_base = _web_base_from_api_url(repository.get("url"))
        repo_url = f"{web_base}/{repo}"
    else:
        repo_url = repo_url.rstrip("/")
        web_base = repo_url[: -len(repo) - 1] if repo_url.endswith("/" + repo) else "https://github.com"
    if delivery is not None and not isinstance(delivery, str):
        raise Unusable(f"delivery id is a {type(delivery).__name__}, not a string")
    context = _Context(kind=kind, payload=payload, repo=repo, repo_url=repo_url,
                       web_base=web_base, author=login, is_bot=_is_bot(login, sender.get("type")),
                       fallback_time=received, fixed_time=False,
                       github_id=(delivery.strip() or None) if delivery else None)
    return builder(context)


# ---------------------------------------------------------------- builders


def _push(c: _Context) -> Event | None:
    p = c.payload
    ref = _req_str(p, "ref", "push")
    head = _opt_str(p, "after") or _opt_str(p, "head")
    if head is None:
        raise Unusable("push has neither 'after' nor 'head'")
    before = _opt_str(p, "before")
    ref_type, short = _split_ref(ref)
    head_commit = _opt_obj(p, "head_commit")
    when = c.time((_opt_obj(p, "repository") or {}).get("pushed_at"),
                  head_commit.get("timestamp") if head_commit else None)
    if p.get("deleted") is True or head == ZERO_SHA:
        if ref_type is None:
            return None
        return _ref_event(c, DELETE, ref_type, short, when, via="push")
    if ref_type == "tag":
        if p.get("created") is True or before == ZERO_SHA:
            return _ref_event(c, CREATE, ref_type, short, when, via="push", sha=head)
        return None  # an existing tag moved: not an activity osintd scores
    if ref_type != "branch":
        return None

    commits = p.get("commits")
    if commits is not None and not isinstance(commits, list):
        raise Unusable("push.commits is not a list")
    commits = commits or []
    for commit in commits:
        if type(commit) is not dict:
            _as_obj(commit, "push.commits[]")
    count = _opt_int(p, "size")
    if count is None and "commits" in p:
        count = len(commits)
    message = _opt_str(head_commit, "message") if head_commit else None
    if message is None and commits:
        message = _opt_str(_head_of(commits, head), "message")
    first_line = message.strip().splitlines()[0].strip() if message and message.strip() else ""
    if first_line:
        title = first_line
    elif count is not None:
        title = f"Pushed {count} commit{'' if count == 1 else 's'} to {short}"
    else:
        title = f"Pushed to {short}"
    url = _http_url(head_commit.get("url")) if head_commit else None
    data = {
        "sha": head, "branch": short, "ref": ref, "before": before,
        "commits": count, "distinct_commits": _opt_int(p, "distinct_size"),
        "created": p.get("created") is True or before == ZERO_SHA,
        "forced": p.get("forced") if isinstance(p.get("forced"), bool) else None,
        "files_changed": _files_changed(commits),
    }
    return c.event(f"commit:{c.repo}:{short}:{head}", COMMIT, title, url or f"{c.repo_url}/commit/{head}",
                   when, None, data)


# Loops, not comprehensions, in these two: 3.11 calls a function for every comprehension.


def _head_of(commits: list[Mapping[str, Any]], head: str) -> Mapping[str, Any]:
    """The (last) commit whose ``id`` or ``sha`` is ``head``, else the last commit."""
    found = commits[-1]
    for commit in commits:
        if head in (commit.get("id"), commit.get("sha")):
            found = commit
    return found


def _files_changed(commits: list[Mapping[str, Any]]) -> int | None:
    """How many paths the commits' ``added``/``removed``/``modified`` lists name (webhooks only)."""
    files: set[str] = set()
    for commit in commits:
        if "added" not in commit and "removed" not in commit and "modified" not in commit:
            continue  # Events API commits carry no file lists: skip the three lookups
        for key in ("added", "removed", "modified"):
            if isinstance(commit.get(key), list):
                files.update(name for name in commit[key] if isinstance(name, str))
    return len(files) or None


def _create(c: _Context) -> Event | None:
    p = c.payload
    ref_type = _req_str(p, "ref_type", c.kind)
    when = c.time()
    if ref_type == "repository" and c.kind == "create":
        data = {"ref_type": "repository", "master_branch": _opt_str(p, "master_branch"),
                "description": _opt_str(p, "description")}
        return c.event(f"create:{c.repo}:repository", CREATE, f"Repository {c.repo} created",
                       c.repo_url, when, "repository", data)
    if ref_type not in ("tag", "branch"):
        return None
    ref = _req_str(p, "ref", c.kind)
    _, short = _split_ref(ref)
    event_type = CREATE if c.kind == "create" else DELETE
    return _ref_event(c, event_type, ref_type, short, when, via=c.kind)


def _ref_event(c: _Context, event_type: EventType, ref_type: str, ref: str, when: dt.datetime,
               via: str, sha: str | None = None) -> Event:
    creating = event_type is CREATE
    verb = "created" if creating else "deleted"
    url = f"{c.repo_url}/tree/{_quote(ref, safe='/')}" if creating else c.repo_url
    data = {"ref": ref, "ref_type": ref_type, "sha": sha, "via": via}
    # "create"/"delete" spelled out: formatting the StrEnum member costs ~60 ns.
    return c.event(f"{'create' if creating else 'delete'}:{c.repo}:{ref_type}:{ref}", event_type,
                   f"{ref_type.capitalize()} {ref} {verb}", url, when, ref_type, data)


def _pull_request(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", "pull_request")
    pr = _req_obj(p, "pull_request", "pull_request")
    number = _opt_int(p, "number") or _req_int(pr, "number", "pull_request")
    if action not in ("opened", "closed", "reopened"):
        return None
    merged = pr.get("merged") if isinstance(pr.get("merged"), bool) else None
    if merged is None and "merged_at" in pr:
        merged = pr.get("merged_at") is not None
    refined = ("merged" if merged else "closed") if action == "closed" else action
    if action == "opened":
        when = c.time(pr.get("created_at"), pr.get("updated_at"))
    elif action == "closed":
        when = c.time(pr.get("merged_at") if merged else None, pr.get("closed_at"), pr.get("updated_at"))
    else:
        when = c.time(pr.get("updated_at"))
    head, base = _opt_obj(pr, "head"), _opt_obj(pr, "base")
    data = {
        "number": number, "merged": merged, "state": _opt_str(pr, "state"),
        "draft": pr.get("draft") if isinstance(pr.get("draft"), bool) else None,
        "head": _opt_str(head, "ref") if head else None,
        "head_sha": _opt_str(head, "sha") if head else None,
        "base": _opt_str(base, "ref") if base else None,
        "commits": _opt_int(pr, "commits"), "additions": _opt_int(pr, "additions"),
        "deletions": _opt_int(pr, "deletions"), "files_changed": _opt_int(pr, "changed_files"),
    }
    return c.event(f"pull_request:{c.repo}:{number}:{action}", PULL_REQUEST,
                   _opt_str(pr, "title") or f"Pull request #{number}",
                   _http_url(pr.get("html_url")) or f"{c.repo_url}/pull/{number}",
                   when, refined, data)


def _issues(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", "issues")
    issue = _req_obj(p, "issue", "issues")
    number = _req_int(issue, "number", "issue")
    if action not in ("opened", "closed", "reopened"):
        return None
    first = {"opened": "created_at", "closed": "closed_at", "reopened": "updated_at"}[action]
    when = c.time(issue.get(first), issue.get("updated_at"))
    changes = _opt_obj(p, "changes")
    old_repo = _opt_obj(changes, "old_repository") if changes else None
    data = {"number": number, "state": _opt_str(issue, "state"),
            "comments": _opt_int(issue, "comments"),
            "transferred_from": _opt_str(old_repo, "full_name") if old_repo else None}
    return c.event(f"issue:{c.repo}:{number}:{action}", ISSUE,
                   _opt_str(issue, "title") or f"Issue #{number}",
                   _http_url(issue.get("html_url")) or f"{c.repo_url}/issues/{number}",
                   when, action, data)


def _issue_comment(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", "issue_comment")
    comment = _req_obj(p, "comment", "issue_comment")
    comment_id = _req_int(comment, "id", "comment")
    issue = _req_obj(p, "issue", "issue_comment")
    number = _req_int(issue, "number", "issue")
    if action != "created":
        return None
    subject = _opt_str(issue, "title")
    data = {"issue_number": number, "comment_id": comment_id,
            "is_pull_request": "pull_request" in issue}
    return c.event(f"comment:issue:{comment_id}", COMMENT,
                   f"Comment on: {subject}" if subject else f"Comment on #{number}",
                   _http_url(comment.get("html_url"))
                   or f"{c.repo_url}/issues/{number}#issuecomment-{comment_id}",
                   c.time(comment.get("created_at")), "created", data)


def _commit_comment(c: _Context) -> Event | None:
    p = c.payload
    action = _opt_str(p, "action") or "created"  # older CommitCommentEvents have no action
    comment = _req_obj(p, "comment", "commit_comment")
    comment_id = _req_int(comment, "id", "comment")
    sha = _req_str(comment, "commit_id", "comment")
    if action != "created":
        return None
    data = {"sha": sha, "comment_id": comment_id, "path": _opt_str(comment, "path")}
    return c.event(f"comment:commit:{comment_id}", COMMENT, f"Comment on commit {sha[:7]}",
                   _http_url(comment.get("html_url"))
                   or f"{c.repo_url}/commit/{sha}#commitcomment-{comment_id}",
                   c.time(comment.get("created_at")), "created", data)


def _review_comment(c: _Context) -> Event | None:
    p = c.payload
    # Events before 2014 have neither an action nor a pull_request: only the comment, whose
    # pull_request_url names the PR.
    action = "created" if p.get("action") is None else _req_str(p, "action", "pull_request_review_comment")
    comment = _req_obj(p, "comment", "pull_request_review_comment")
    comment_id = _req_int(comment, "id", "comment")
    pr = _opt_obj(p, "pull_request")
    if pr is not None:
        number = _req_int(pr, "number", "pull_request")
    else:
        number = _number_from_url(comment.get("pull_request_url"), "comment.pull_request_url")
        pr = {}
    if action != "created":
        return None
    subject = _opt_str(pr, "title")
    data = {"number": number, "comment_id": comment_id, "path": _opt_str(comment, "path"),
            "review_id": _opt_int(comment, "pull_request_review_id")}
    return c.event(f"comment:pr:{comment_id}", COMMENT,
                   f"Review comment on: {subject}" if subject else f"Review comment on #{number}",
                   _http_url(comment.get("html_url"))
                   or f"{c.repo_url}/pull/{number}#discussion_r{comment_id}",
                   c.time(comment.get("created_at")), "created", data)


def _number_from_url(url: object, where: str) -> int:
    """The number at the end of an API URL such as ``…/pulls/110``."""
    tail = url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) else ""
    if not (tail.isascii() and tail.isdigit()):
        raise Unusable(f"{where} is {_shown(url)}, not a URL ending in a number")
    return int(tail)


def _review(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", "pull_request_review")
    review = _req_obj(p, "review", "pull_request_review")
    review_id = _req_int(review, "id", "review")
    pr = _req_obj(p, "pull_request", "pull_request_review")
    number = _req_int(pr, "number", "pull_request")
    if action not in ("submitted", "created"):  # webhook says submitted, Events API created
        return None
    state = (_opt_str(review, "state") or "submitted").lower()
    subject = _opt_str(pr, "title") or f"#{number}"
    data = {"number": number, "state": state, "review_id": review_id,
            "sha": _opt_str(review, "commit_id")}
    return c.event(f"review:{review_id}", REVIEW, f"Review ({state}): {subject}",
                   _http_url(review.get("html_url"))
                   or f"{c.repo_url}/pull/{number}#pullrequestreview-{review_id}",
                   c.time(review.get("submitted_at"), review.get("updated_at")), state, data)


def _release(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", "release")
    release = _req_obj(p, "release", "release")
    release_id = _req_int(release, "id", "release")
    tag = _req_str(release, "tag_name", "release")
    if action != "published":
        return None
    name = _opt_str(release, "name")
    assets = release.get("assets")
    data = {"tag_name": tag, "name": name, "release_id": release_id,
            "prerelease": release.get("prerelease") if isinstance(release.get("prerelease"), bool) else None,
            "assets": len(assets) if isinstance(assets, list) else None}
    return c.event(f"release:{release_id}", RELEASE,
                   f"Release {name.strip() if name and name.strip() else tag}",
                   _http_url(release.get("html_url"))
                   or f"{c.repo_url}/releases/tag/{_quote(tag, safe='')}",
                   c.time(release.get("published_at"), release.get("created_at")), "published", data)


def _star(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", c.kind)
    if (c.kind, action) not in (("watch", "started"), ("star", "created")):
        return None
    return c.event(f"star:{c.repo}:{c.author}", STAR, f"Starred {c.repo}", c.repo_url,
                   c.time(p.get("starred_at")), "started", {"via": c.kind})


def _fork(c: _Context) -> Event | None:
    forkee = _req_obj(c.payload, "forkee", "fork")
    full_name = _repo_name(forkee.get("full_name"), "forkee.full_name")
    owner = _opt_obj(forkee, "owner")
    data = {"forkee": full_name, "forkee_owner_type": _opt_str(owner, "type") if owner else None}
    return c.event(f"fork:{full_name}", FORK, f"Forked to {full_name}",
                   _http_url(forkee.get("html_url")) or f"{c.web_base}/{full_name}",
                   c.time(forkee.get("created_at")), None, data)


def _discussion(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", "discussion")
    discussion = _req_obj(p, "discussion", "discussion")
    number = _req_int(discussion, "number", "discussion")
    if action not in ("created", "answered"):
        return None
    first = discussion.get("created_at") if action == "created" else discussion.get("answer_chosen_at")
    category = _opt_obj(discussion, "category")
    data = {"number": number, "state": _opt_str(discussion, "state"),
            "category": _opt_str(category, "name") if category else None}
    return c.event(f"discussion:{c.repo}:{number}:{action}", DISCUSSION,
                   _opt_str(discussion, "title") or f"Discussion #{number}",
                   _http_url(discussion.get("html_url")) or f"{c.repo_url}/discussions/{number}",
                   c.time(first, discussion.get("updated_at")), action, data)


def _discussion_comment(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", "discussion_comment")
    comment = _req_obj(p, "comment", "discussion_comment")
    comment_id = _req_int(comment, "id", "comment")
    discussion = _req_obj(p, "discussion", "discussion_comment")
    number = _req_int(discussion, "number", "discussion")
    if action != "created":
        return None
    subject = _opt_str(discussion, "title")
    return c.event(f"comment:discussion:{comment_id}", COMMENT,
                   f"Comment on discussion: {subject}" if subject else f"Comment on discussion #{number}",
                   _http_url(comment.get("html_url"))
                   or f"{c.repo_url}/discussions/{number}#discussioncomment-{comment_id}",
                   c.time(comment.get("created_at")), "created",
                   {"discussion_number": number, "comment_id": comment_id})


def _member(c: _Context) -> Event | None:
    p = c.payload
    action = _req_str(p, "action", "member")
    member = _req_obj(p, "member", "member")
    login = _req_login(member, "member")
    if action not in ("added", "removed", "edited"):
        return None
    changes = _opt_obj(p, "changes") or {}
    old = _opt_obj(changes, "old_permission") or {}
    new = _opt_obj(changes, "permission") or {}
    title = {"added": f"{login} added as a collaborator",
             "removed": f"{login} removed as a collaborator",
             "edited": f"{login}'s collaborator permission changed"}[action]
    data = {"member": login, "old_permission": _opt_str(old, "from"),
            "permission": _opt_str(new, "to")}
    return c.event(f"member:{c.repo}:{login}:{action}", MEMBER, title, c.repo_url,
                   c.time(), action, data)


def _public(c: _Context) -> Event | None:
    return c.event(f"public:{c.repo}", PUBLIC, f"{c.repo} made public", c.repo_url,
                   c.time(), None, {})


def _gollum(c: _Context) -> Event | None:
    pages = c.payload.get("pages")
    if not isinstance(pages, list):
        raise Unusable(f"gollum.pages is {_shown(pages)}, not a list")
    if not pages:
        return None  # no page changed: nothing happened
    names, actions, revisions = [], [], set()
    objects = [page if type(page) is dict else _as_obj(page, "gollum.pages[]") for page in pages]
    for page in objects:
        name = _req_str(page, "page_name", "gollum.pages[]")
        action = _opt_str(page, "action") or "edited"
        names.append(_opt_str(page, "title") or name)
        actions.append(action)
        # The wiki commit each page is at (one push to the wiki: often one sha for all pages).
        revisions.add(_opt_str(page, "sha") or f"{action}/{name}")
    action = "created" if "created" in actions else "edited"
    title = f"Wiki page {names[0]} {actions[0]}" if len(names) == 1 else \
        f"Wiki pages {names[0]} and {len(names) - 1} more {action}"
    first = objects[0]
    data = {"pages": len(pages), "page_name": _opt_str(first, "page_name"), "sha": _opt_str(first, "sha")}
    return c.event(f"wiki:{c.repo}:{','.join(sorted(revisions))}", WIKI, title,
                   _http_url(first.get("html_url")) or f"{c.repo_url}/wiki", c.time(), action, data)


_BUILDERS: Mapping[str, Callable[[_Context], Event | None]] = {
    "push": _push,
    "pull_request": _pull_request,
    "issues": _issues,
    "issue_comment": _issue_comment,
    "commit_comment": _commit_comment,
    "pull_request_review": _review,
    "pull_request_review_comment": _review_comment,
    "release": _release,
    "watch": _star,
    "star": _star,
    "fork": _fork,
    "create": _create,
    "delete": _create,
    "discussion": _discussion,
    "discussion_comment": _discussion_comment,
    "member": _member,
    "public": _public,
    "gollum": _gollum,
}


# ----------------------------------------------------------------- helpers


# JSON objects arrive as dicts; ``type(x) is dict`` is checked first because it costs a
# tenth of ``isinstance(x, Mapping)`` (an ABC check), which other mappings still pass.


def _as_obj(value: object, where: str) -> Mapping[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise Unusable(f"{where} is a {type(value).__name__}, not an object")
    return value


def _req_obj(m: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    if key not in m or (value := m[key]) is None:
        raise Unusable(f"{where} has no {key!r}")
    if type(value) is dict:  # without building the name _as_obj would only need for its error
        return value
    return _as_obj(value, f"{where}.{key}")


def _opt_obj(m: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = m.get(key)
    if value is None:
        return None
    return _as_obj(value, key)


def _req_str(m: Mapping[str, Any], key: str, where: str) -> str:
    value = m.get(key)
    if not isinstance(value, str) or not value.strip():
        raise Unusable(f"{where}.{key} is {_shown(value)}, not a non-empty string")
    return value


def _req_login(account: Mapping[str, Any], where: str) -> str:
    login = _req_str(account, "login", where)
    if len(login) > _LOGIN_MAX:
        raise Unusable(f"{where}.login is {len(login)} characters long; GitHub's are at most {_LOGIN_MAX}")
    return login


def _shown(value: object) -> str:
    """``repr(value)`` for an error message, cut short: a message must not carry a huge input."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _opt_str(m: Mapping[str, Any], key: str) -> str | None:
    """A string field, ``None`` when absent, null or not a string (display fields only)."""
    value = m.get(key)
    return value if isinstance(value, str) and value != "" else None


def _req_int(m: Mapping[str, Any], key: str, where: str) -> int:
    value = m.get(key)
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise Unusable(f"{where}.{key} is {_shown(value)}, not an integer")
    return value


def _opt_int(m: Mapping[str, Any], key: str) -> int | None:
    value = m.get(key)
    if type(value) is int:  # bool is an int subclass: only this exact test spares the second check
        return value
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _repo_name(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise Unusable(f"{where} is {_shown(value)}, not an owner/name string")
    if len(value) > _REPO_NAME_MAX:
        raise Unusable(f"{where} is {len(value)} characters long; GitHub's are at most {_REPO_NAME_MAX}")
    # Exactly one slash, neither first nor last; count() makes no substrings, partition() did.
    if value.count("/") != 1 or value[0] == "/" or value[-1] == "/" or value != value.strip():
        raise Unusable(f"{where} is {value!r}, not owner/name")
    return value


def _is_bot(login: str, account_type: object) -> bool:
    # Only "]" lower-cases to a trailing "]", so most logins are decided without lower().
    return account_type == "Bot" or (login.endswith("]") and login.lower().endswith("[bot]"))


def _split_ref(ref: str) -> tuple[str | None, str]:
    """``refs/heads/x`` → (branch, x); ``refs/tags/x`` → (tag, x); else (None, ref)."""
    if ref.startswith("refs/heads/"):
        return "branch", ref[11:]
    if ref.startswith("refs/tags/"):
        return "tag", ref[10:]
    return None, ref


def _http_url(value: object) -> str | None:
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return None


def _web_base_from_api_url(value: object) -> str:
    """The web host that serves a REST API URL: api.github.com → github.com, GHES /api/v3 → its host."""
    if not isinstance(value, str) or value.startswith("https://api.github.com/"):  # nearly always
        return "https://github.com"
    url = _http_url(value)
    if url is None:
        return "https://github.com"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. a broken IPv6 literal
        return "https://github.com"
    host = parts.netloc
    if host.startswith("api."):
        return f"{parts.scheme}://{host[4:]}"
    if parts.path.startswith("/api/v3/") and host:
        return f"{parts.scheme}://{host}"
    return "https://github.com"


#: Text that urllib.parse.quote leaves as it is: its always-safe characters (and "/" if safe).
_UNQUOTED = {"": re.compile(r"[A-Za-z0-9_.~-]*"), "/": re.compile(r"[A-Za-z0-9_.~/-]*")}


def _quote(text: str, safe: str) -> str:
    """``urllib.parse.quote(text, safe=safe)``; most refs and tags need no escaping, and a
    regular expression tells so at a quarter of quote's cost."""
    if type(text) is str and _UNQUOTED[safe].fullmatch(text):
        return text
    return urllib.parse.quote(text, safe=safe)


def _one_line(text: str) -> str:
    # Most titles are one line already; every whitespace character but " " is unprintable,
    # so these tests pick out exactly the titles split/join would return unchanged.
    if (type(text) is str and text.isprintable() and "  " not in text
            and not text.startswith(" ") and not text.endswith(" ")):
        line = text
    else:
        line = " ".join(text.split())
    return line if len(line) <= _TITLE_MAX else line[: _TITLE_MAX - 1] + "…"


#: What builders put in ``data`` almost always: kept on a cheap exact-type check.
_PRIMITIVE_TYPES = frozenset({str, int, bool})


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    """Keep JSON primitives only; unknown values (``None``) are left out."""
    clean = {}
    for key, value in data.items():  # a loop: in 3.11 a comprehension is one more call
        if type(value) in _PRIMITIVE_TYPES or (value is not None and _is_primitive(value)):
            clean[key] = _cut(value, _DATA_STRING_MAX) if type(value) is str else value
    return clean


def _is_primitive(value: object) -> bool:
    """Subclasses of str/int/bool and floats (not NaN) are JSON primitives too."""
    return isinstance(value, (str, int, float, bool)) and not (isinstance(value, float) and value != value)
