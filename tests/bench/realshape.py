"""A generated GH Archive file with the shape of real GitHub hours, for the bench's ``real`` row.

``gharchive.py`` makes one busy hour where every event is a fresh natural key;
this makes what twelve consecutive real GH Archive hours look like (measured on
143,714 real events, see ``../shared/real-github/README.md``), so that a replay
of it costs osintd what real hours cost:

- 12,000 events an hour, about 43,000 distinct repositories over 12 hours,
  long-tailed: most repositories have one or two events (per-repository event
  counts drawn from a power law, exponent 2.1);
- PushEvent about 58 %, then CreateEvent, WatchEvent, IssueCommentEvent,
  PullRequestEvent, IssuesEvent, ForkEvent, DeleteEvent, GollumEvent,
  PullRequestReviewCommentEvent, CommitCommentEvent, ReleaseEvent,
  MemberEvent, PublicEvent in roughly the real proportions;
- about one push in five has the same head SHA as a push to the same
  repository a few seconds earlier, to another ref (master and gh-pages moved
  together, a topic branch fast-forwarded into master);
- real repeats: a branch deleted and created again under the same name, a pull
  request closed, reopened and closed again, a repository created twice, a
  star given twice by the same person;
- single-account machines producing 700-1,400 events each over 12 hours: a
  heartbeat repository pushed every minute by two accounts, a data logger, a
  scraper committing in bursts, a game-data dumper, and a test account that
  cycles branches and pull requests;
- popular repositories where 50-200 distinct people star, fork, open issues
  and pull requests and comment, and a few maintainers push and merge.

Every line is one event in the Events API / GH Archive shape of the 2015 files
(full user and repository objects inside pull requests, forks, issues and
comments, so lines weigh about what real ones do), with its own GitHub ``id``
(increasing with time, all distinct), sorted by ``created_at``.  Deterministic
by seed.  The file is gzipped, like GH Archive's.

    python realshape.py OUT.json.gz [--hours 12] [--per-hour 12000] [--seed 1]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import datetime as dt
import gzip
import itertools
import json
import random
from pathlib import Path
from typing import Any

import orjson

START = dt.datetime(2015, 1, 5, 0, 0, tzinfo=dt.timezone.utc)  # a Monday, like the real hours' era

#: Event types of the long tail and their weights.  A "PushEvent" draw becomes two pushes
#: (the same head to two refs) with probability PAIR, so pushes end near 58 % of all events.
TAIL_KINDS = (("PushEvent", 47.0), ("CreateEvent", 11.0), ("WatchEvent", 9.0), ("IssueCommentEvent", 6.5),
              ("PullRequestEvent", 4.5), ("IssuesEvent", 4.0), ("ForkEvent", 3.0), ("DeleteEvent", 2.0),
              ("GollumEvent", 1.4), ("PullRequestReviewCommentEvent", 0.6), ("CommitCommentEvent", 0.5),
              ("ReleaseEvent", 0.4), ("MemberEvent", 0.2), ("PublicEvent", 0.1))
PAIR = 0.40  # one-event repositories have no room for a pair: this makes it one push in five overall
#: Per-repository event counts in the tail: P(k) proportional to k ** -ALPHA, k up to 25 per hour.
ALPHA = 2.1
#: Tail repositories (with at least 3 events) that carry one real repeat pattern.
REPEAT_SHARE = 0.04
#: Popular repositories per 12 hours, each with 50-200 distinct people (scaled with the hours).
POPULAR = 15

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "ba", "de", "fu", "go", "hi", "ja", "ke", "lu",
             "ma", "no", "pi", "qu", "ra", "se", "ti", "ul", "ve", "wa", "xi", "yo", "ze", "an", "el", "or",
             "is", "um", "ar", "en", "ol", "ix", "ay", "ed", "ri", "so", "tu", "ca", "do", "fe", "gi", "ho",
             "jo", "ki", "la", "me", "ni", "po", "re", "sa", "te", "vi", "yu", "zo", "bo", "da", "fi", "ge")
WORDS = ("fix", "add", "update", "remove", "refactor", "parser", "tests", "docs", "cache", "client", "server",
         "memory", "leak", "retry", "timeout", "config", "build", "release", "typo", "api", "readme", "style",
         "layout", "login", "page", "data", "model", "view", "router", "script", "deploy", "merge", "branch",
         "issue", "support", "error", "handling", "new", "feature", "initial", "commit", "version", "bump",
         "css", "html", "js", "python", "ruby", "java", "game", "app", "site", "blog", "post", "theme", "plugin")
REPO_WORDS = ("dotfiles", "blog", "website", "app", "api", "tools", "notes", "game", "bot", "lib", "core", "cli",
              "server", "client", "demo", "homework", "project", "scripts", "config", "theme", "plugin", "sdk",
              "docs", "examples", "tutorial", "android", "ios", "web", "engine", "framework", "utils", "data")
LANGUAGES = ("JavaScript", "Java", "Python", "Ruby", "PHP", "C++", "C", "CSS", "Go", "Shell", "C#", "Objective-C",
             None, "HTML", "Perl", "Scala", "Haskell", "R", "Lua", "Clojure")
CORPUS = " ".join(itertools.islice(itertools.cycle(
    "the quick fix for the parser keeps every event and the tests now cover the retry path when the server "
    "times out; see the issue above for the stack trace and the steps to reproduce it on a clean checkout. "
    "this also updates the readme with the new configuration options and bumps the version. thanks for the "
    "review, I rebased on master and squashed the commits; the build is green again on all platforms.\r\n"
    .split(" ")), 4000))


def stamp(seconds: float) -> str:
    return (START + dt.timedelta(seconds=int(seconds))).strftime("%Y-%m-%dT%H:%M:%SZ")


class Repo:
    __slots__ = ("name", "owner", "id", "org", "description", "language", "created", "number", "open_prs",
                 "open_issues", "head", "obj", "kind")

    def __init__(self, name: str, owner: str, repo_id: int, org: bool, description: str, language: str | None,
                 created: str, number: int, kind: str) -> None:
        self.name, self.owner, self.id, self.org = name, owner, repo_id, org
        self.description, self.language, self.created = description, language, created
        self.number = number          # the last issue/PR number used
        self.open_prs: list[int] = []
        self.open_issues: list[int] = []
        self.head: str | None = None  # the last head pushed to the default branch
        self.obj: dict | None = None  # the full repository object, made once
        self.kind = kind              # "tail", "popular" or "machine"


class Generator:
    def __init__(self, seed: int = 1, hours: float = 12.0, per_hour: int = 12_000) -> None:
        self.rnd = random.Random(seed)
        self.hours = hours
        self.span = int(hours * 3600)
        self.total = int(round(hours * per_hour))
        self.plan: list[tuple[int, int, str, Repo, str, dict]] = []  # (second, order, type, repo, actor, extra)
        self._order = itertools.count()
        self._users: dict[str, dict] = {}
        self._user_ids: dict[str, int] = {}
        self._repo_names: set[str] = set()
        self._next_user = 0
        self.machines: list[Repo] = []
        self.popular: list[tuple[Repo, int]] = []
        self.repeats: collections.Counter[str] = collections.Counter()  # repeat patterns in the tail
        self.tail_kinds = [k for k, _ in TAIL_KINDS]
        self.tail_cum = list(itertools.accumulate(w for _, w in TAIL_KINDS))

    # ------------------------------------------------------------------ names

    def login(self, index: int | None = None) -> str:
        """A login made of syllables, unique per index; a fresh one when ``index`` is None."""
        if index is None:
            index = self._next_user
            self._next_user += 1
        parts = []
        n = index + len(SYLLABLES) ** 2  # at least three syllables
        while True:
            parts.append(SYLLABLES[n % len(SYLLABLES)])
            n //= len(SYLLABLES)
            if n == 0:
                break
        name = "".join(parts)
        if index % 3 == 0:
            name += str(index % 97)
        elif index % 3 == 1:
            name = name.capitalize()
        return name

    def user_id(self, login: str) -> int:
        uid = self._user_ids.get(login)
        if uid is None:
            uid = self._user_ids[login] = 100_000 + self.rnd.randrange(10_000_000)
        return uid

    def new_repo(self, kind: str, owner: str | None = None, name: str | None = None) -> Repo:
        r = self.rnd
        owner = owner or self.login()
        base = name or f"{r.choice(REPO_WORDS)}" + (f"-{r.choice(REPO_WORDS)}" if r.random() < 0.5 else "")
        full = f"{owner}/{base}"
        while full in self._repo_names:
            full = f"{owner}/{base}-{r.randint(2, 999)}"
        self._repo_names.add(full)
        created = stamp(-r.randint(3600, 5 * 365 * 86400))
        return Repo(full, owner, 1_000_000 + r.randrange(27_000_000), r.random() < 0.25,
                    self.title(), r.choice(LANGUAGES), created, r.randint(0, 300), kind)

    # ------------------------------------------------------------------ text

    def title(self) -> str:
        r = self.rnd
        return " ".join(r.choice(WORDS) for _ in range(r.randint(2, 8))).capitalize()

    def body(self, mean: int) -> str:
        r = self.rnd
        size = min(len(CORPUS) - 1, int(r.expovariate(1.0 / mean))) if mean else 0
        start = r.randrange(len(CORPUS) - size)
        return CORPUS[start:start + size]

    def message(self) -> str:
        return self.title() + ("\n\n" + self.body(150) if self.rnd.random() < 0.35 else "")

    def sha(self) -> str:
        return f"{self.rnd.getrandbits(160):040x}"

    # ------------------------------------------------------------------ planning

    def add(self, at: float, kind: str, repo: Repo, actor: str, **extra: Any) -> None:
        self.plan.append((int(at) % self.span, next(self._order), kind, repo, actor, extra))  # past the end: wraps

    def build(self) -> None:
        self._machines()
        self._popular()
        self._tail(self.total - len(self.plan))

    def _machines(self) -> None:
        """Single-account automation: 700-1,400 events each over 12 hours, pushes by the minute."""
        r, span = self.rnd, self.span
        beat = self.new_repo("machine", name="heartbeat")
        second = self.login()
        self.machines.append(beat)
        t = r.uniform(0, 5)
        while t < span:  # account one: every minute
            self.add(t, "PushEvent", beat, beat.owner, commits=1, message="heartbeat")
            t += 60 + r.uniform(-1.5, 1.5)
        t = r.uniform(0, 60)
        while t < span:  # account two, from another machine: about every 85 s
            self.add(t, "PushEvent", beat, second, commits=1, message="heartbeat")
            t += 85 + r.uniform(-4, 4)
        logger = self.new_repo("machine", name="weather-log")
        self.machines.append(logger)
        t = r.uniform(0, 30)
        while t < span:
            self.add(t, "PushEvent", logger, logger.owner, commits=1, message="Update readings")
            t += 55 + r.uniform(-5, 5)
        scraper = self.new_repo("machine", name="scraped-data")
        self.machines.append(scraper)
        t = r.uniform(0, 60)
        while t < span:  # a burst of commits every ten minutes
            u = t
            for _ in range(13):
                self.add(u, "PushEvent", scraper, scraper.owner, commits=r.randint(1, 2), message="Scraped data")
                u += r.uniform(3, 8)
            t += 600
        dumper = self.new_repo("machine", name="game-data")
        self.machines.append(dumper)
        t = r.uniform(0, 40)
        while t < span:
            if r.random() < 0.7:
                self.add(t, "PushEvent", dumper, dumper.owner, commits=3, message="Data dump")
            t += 40
        tester = self.new_repo("machine", name="test-repo-automation")
        self.machines.append(tester)
        t = r.uniform(0, 50)
        while t < span:  # the same branch created, pushed, proposed, closed and deleted, over and over
            self.add(t, "CreateEvent", tester, tester.owner, ref_type="branch", ref="test-branch")
            self.add(t + 10, "PushEvent", tester, tester.owner, commits=1, ref="refs/heads/test-branch",
                     message="Test commit")
            self.add(t + 20, "PullRequestEvent", tester, tester.owner, action="opened")
            self.add(t + 30, "PullRequestEvent", tester, tester.owner, action="closed")
            self.add(t + 40, "DeleteEvent", tester, tester.owner, ref_type="branch", ref="test-branch")
            t += 250

    def _popular(self) -> None:
        """Repositories people flock to: 50-200 distinct people each over 12 hours (fewer over fewer hours)."""
        r, span = self.rnd, self.span
        scale = min(1.0, self.hours / 12.0)
        for _ in range(max(3, round(POPULAR * scale))):
            repo = self.new_repo("popular")
            people = max(10, round(r.randint(50, 200) * scale))
            self.popular.append((repo, people))
            peak, spread = r.uniform(0.1, 0.9) * span, span / 6

            def when(peak: float = peak, spread: float = spread) -> float:
                for _ in range(20):  # a wave of attention inside the file's hours (no pile-up at either end)
                    t = r.gauss(peak, spread)
                    if 0 <= t < span:
                        return t
                return r.uniform(0, span)
            for _ in range(people):
                person = self.login()
                for _ in range(r.choices((1, 2, 3), (70, 25, 5))[0]):
                    kind = r.choices(("WatchEvent", "ForkEvent", "IssueCommentEvent", "IssuesEvent",
                                      "PullRequestEvent", "PullRequestReviewCommentEvent"),
                                     (50, 17, 17, 8, 5, 3))[0]
                    extra = {"action": "opened"} if kind in ("IssuesEvent", "PullRequestEvent") else {}
                    self.add(when(), kind, repo, person, **extra)
            maintainers = [repo.owner] + [self.login() for _ in range(r.randint(1, 3))]
            for _ in range(max(3, round(r.randint(20, 60) * scale))):
                t, who = when(), r.choice(maintainers)
                kind = r.choices(("push", "PullRequestEvent", "IssuesEvent", "IssueCommentEvent",
                                  "CreateEvent"), (60, 15, 8, 15, 2))[0]
                if kind == "push":
                    self._push(t, repo, who)
                elif kind in ("PullRequestEvent", "IssuesEvent"):
                    self.add(t, kind, repo, who, action="closed")
                elif kind == "CreateEvent":
                    self.add(t, kind, repo, who, ref_type="tag", ref=f"v1.{r.randint(0, 40)}.{r.randint(0, 9)}")
                else:
                    self.add(t, kind, repo, who)

    def _push(self, t: float, repo: Repo, actor: str) -> int:
        """A push; with probability PAIR a second push of the same head to another ref a few seconds later."""
        r = self.rnd
        if r.random() < PAIR:
            first, second = r.choice((("refs/heads/master", "refs/heads/gh-pages"),
                                      (f"refs/heads/{r.choice(WORDS)}-{r.choice(WORDS)}", "refs/heads/master"),
                                      ("refs/heads/develop", "refs/heads/master")))
            shared: dict = {}
            self.add(t, "PushEvent", repo, actor, ref=first, shared=shared)
            self.add(t + r.randint(1, 15), "PushEvent", repo, actor, ref=second, shared=shared)
            return 2
        self.add(t, "PushEvent", repo, actor)
        return 1

    def _tail(self, budget: int) -> None:
        """The long tail: repositories with one, two, a few events, by their owners and passers-by."""
        r, span = self.rnd, self.span
        top = max(10, int(25 * self.hours))
        weights = list(itertools.accumulate(k ** -ALPHA for k in range(1, top + 1)))
        owners: list[str] = []
        while budget > 0:
            k = min(budget, bisect.bisect_left(weights, r.random() * weights[-1]) + 1)
            # Some accounts own several active repositories.
            owner = r.choice(owners) if owners and r.random() < 0.15 else self.login()
            owners.append(owner)
            repo = self.new_repo("tail", owner=owner)
            budget -= self._story(repo, k)

    def _story(self, repo: Repo, k: int) -> int:
        """Plan exactly ``k`` events for one repository (a push pair only where two still fit)."""
        r, span = self.rnd, self.span
        # Times: sessions of minutes, now and then a pause of hours.
        offsets = [0.0]
        for _ in range(k - 1):
            gap = r.expovariate(1 / 7200) if r.random() < 0.1 else r.expovariate(1 / 240)
            offsets.append(offsets[-1] + gap)
        # Anywhere in the hours; a story running past the end goes on from the start (the same
        # activity a day later), so that no hour holds more story starts or ends than another.
        t0 = r.uniform(0, span)
        times = iter((t0 + o) % span for o in offsets)
        planned = 0
        if k >= 3 and r.random() < REPEAT_SHARE:
            planned += self._repeat(repo, next(times), k)
            for _ in range(planned - 1):
                next(times, None)
        for t in times:
            if planned >= k:
                break
            kind = r.choices(self.tail_kinds, cum_weights=self.tail_cum)[0]
            if kind == "PushEvent":
                if planned + 2 <= k:
                    planned += self._push(t, repo, repo.owner)
                else:
                    self.add(t, "PushEvent", repo, repo.owner)
                    planned += 1
                continue
            if kind in ("WatchEvent", "ForkEvent"):
                actor = self.login()
            elif kind in ("IssueCommentEvent", "IssuesEvent", "PullRequestEvent", "PullRequestReviewCommentEvent",
                          "CommitCommentEvent"):
                actor = repo.owner if r.random() < 0.4 else self.login()
            else:
                actor = repo.owner
            self.add(t, kind, repo, actor)
            planned += 1
        return planned

    def _repeat(self, repo: Repo, t: float, k: int) -> int:
        """One real repeat: each event has its own id and happened again."""
        r = self.rnd
        pattern = r.choice(("branch", "pr", "repository", "star") if k >= 4 else ("branch", "repository", "star"))
        self.repeats[pattern] += 1
        if pattern == "branch":  # deleted and created again under the same name
            ref = f"{r.choice(WORDS)}-{r.choice(WORDS)}"
            self.add(t, "CreateEvent", repo, repo.owner, ref_type="branch", ref=ref)
            self.add(t + r.randint(30, 900), "DeleteEvent", repo, repo.owner, ref_type="branch", ref=ref)
            self.add(t + r.randint(901, 3600), "CreateEvent", repo, repo.owner, ref_type="branch", ref=ref)
            return 3
        if pattern == "pr":  # opened, closed, reopened, closed again
            number = repo.number = repo.number + 1
            for i, action in enumerate(("opened", "closed", "reopened", "closed")):
                self.add(t + i * r.randint(20, 600), "PullRequestEvent", repo, repo.owner, action=action,
                         number=number)
            return 4
        if pattern == "repository":  # deleted (no event) and created again
            self.add(t, "CreateEvent", repo, repo.owner, ref_type="repository", ref=None)
            self.add(t + r.randint(60, 1800), "CreateEvent", repo, repo.owner, ref_type="repository", ref=None)
            return 2
        fan = self.login()  # a star removed (no event) and given again
        self.add(t, "WatchEvent", repo, fan)
        self.add(t + r.randint(60, 3600), "WatchEvent", repo, fan)
        return 2

    # ------------------------------------------------------------------ rendering

    def user(self, login: str) -> dict:
        obj = self._users.get(login)
        if obj is None:
            api = f"https://api.github.com/users/{login}"
            obj = self._users[login] = {
                "login": login, "id": self.user_id(login),
                "avatar_url": f"https://avatars.githubusercontent.com/u/{self.user_id(login)}?v=3",
                "gravatar_id": "", "url": api, "html_url": f"https://github.com/{login}",
                "followers_url": f"{api}/followers", "following_url": f"{api}/following{{/other_user}}",
                "gists_url": f"{api}/gists{{/gist_id}}", "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
                "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
                "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
                "received_events_url": f"{api}/received_events", "type": "User", "site_admin": False}
        return obj

    def repo_object(self, repo: Repo, full_name: str | None = None, owner: str | None = None,
                    created: str | None = None) -> dict:
        if full_name is None and repo.obj is not None:
            return repo.obj
        r = self.rnd
        name = full_name or repo.name
        api, web = f"https://api.github.com/repos/{name}", f"https://github.com/{name}"
        stars = r.randint(0, 50)
        obj = {"id": repo.id if full_name is None else 28_000_000 + r.randrange(1_000_000),
               "name": name.split("/", 1)[1], "full_name": name, "owner": self.user(owner or repo.owner),
               "private": False, "html_url": web, "description": repo.description,
               "fork": full_name is not None, "url": api}
        for key, path in (("forks", "/forks"), ("keys", "/keys{/key_id}"),
                          ("collaborators", "/collaborators{/collaborator}"), ("teams", "/teams"),
                          ("hooks", "/hooks"), ("issue_events", "/issues/events{/number}"), ("events", "/events"),
                          ("assignees", "/assignees{/user}"), ("branches", "/branches{/branch}"), ("tags", "/tags"),
                          ("blobs", "/git/blobs{/sha}"), ("git_tags", "/git/tags{/sha}"),
                          ("git_refs", "/git/refs{/sha}"), ("trees", "/git/trees{/sha}"),
                          ("statuses", "/statuses/{sha}"), ("languages", "/languages"),
                          ("stargazers", "/stargazers"), ("contributors", "/contributors"),
                          ("subscribers", "/subscribers"), ("subscription", "/subscription"),
                          ("commits", "/commits{/sha}"), ("git_commits", "/git/commits{/sha}"),
                          ("comments", "/comments{/number}"), ("issue_comment", "/issues/comments/{number}"),
                          ("contents", "/contents/{+path}"), ("compare", "/compare/{base}...{head}"),
                          ("merges", "/merges"), ("archive", "/{archive_format}{/ref}"), ("downloads", "/downloads"),
                          ("issues", "/issues{/number}"), ("pulls", "/pulls{/number}"),
                          ("milestones", "/milestones{/number}"),
                          ("notifications", "/notifications{?since,all,participating}"),
                          ("labels", "/labels{/name}"), ("releases", "/releases{/id}")):
            obj[f"{key}_url"] = api + path
        obj.update({"created_at": created or repo.created, "updated_at": created or repo.created,
                    "pushed_at": created or repo.created, "git_url": f"git://github.com/{name}.git",
                    "ssh_url": f"git@github.com:{name}.git", "clone_url": f"{web}.git", "svn_url": web,
                    "homepage": None, "size": r.randint(0, 200_000), "stargazers_count": stars,
                    "watchers_count": stars, "language": repo.language, "has_issues": True, "has_downloads": True,
                    "has_wiki": True, "has_pages": False, "forks_count": r.randint(0, 10), "mirror_url": None,
                    "open_issues_count": len(repo.open_issues), "forks": 0, "open_issues": len(repo.open_issues),
                    "watchers": stars, "default_branch": "master"})
        if full_name is None:
            repo.obj = obj
        return obj

    def _number(self, repo: Repo, action: str, opened: list[int], extra: dict) -> int:
        if "number" in extra:
            return extra["number"]
        if action == "opened":
            repo.number += 1
            opened.append(repo.number)
            return repo.number
        if opened:
            return opened.pop(self.rnd.randrange(len(opened)))
        return self.rnd.randint(1, max(1, repo.number))  # opened before the file's hours

    def _issue(self, repo: Repo, number: int, login: str, when: str, state: str, pull: bool = False) -> dict:
        api, web = f"https://api.github.com/repos/{repo.name}", f"https://github.com/{repo.name}"
        issue = {"url": f"{api}/issues/{number}", "labels_url": f"{api}/issues/{number}/labels{{/name}}",
                 "comments_url": f"{api}/issues/{number}/comments", "events_url": f"{api}/issues/{number}/events",
                 "html_url": f"{web}/{'pull' if pull else 'issues'}/{number}", "id": 50_000_000 + number * 7919 % 10**7,
                 "number": number, "title": self.title(), "user": self.user(login), "labels": [], "state": state,
                 "locked": False, "assignee": None, "milestone": None, "comments": self.rnd.randint(0, 12),
                 "created_at": when, "updated_at": when, "closed_at": when if state == "closed" else None}
        if pull:
            issue["pull_request"] = {"url": f"{api}/pulls/{number}", "html_url": f"{web}/pull/{number}",
                                     "diff_url": f"{web}/pull/{number}.diff", "patch_url": f"{web}/pull/{number}.patch"}
        issue["body"] = self.body(600)
        return issue

    def _pull(self, repo: Repo, number: int, login: str, when: str, action: str) -> dict:
        r = self.rnd
        api, web = f"https://api.github.com/repos/{repo.name}", f"https://github.com/{repo.name}"
        head = self.sha()
        closed = action == "closed"
        merged = closed and r.random() < 0.6
        side = self.repo_object(repo)
        pr = {"url": f"{api}/pulls/{number}", "id": 26_000_000 + r.randrange(10**6), "html_url": f"{web}/pull/{number}",
              "diff_url": f"{web}/pull/{number}.diff", "patch_url": f"{web}/pull/{number}.patch",
              "issue_url": f"{api}/issues/{number}", "number": number, "state": "closed" if closed else "open",
              "locked": False, "title": self.title(), "user": self.user(login), "body": self.body(700),
              "created_at": when, "updated_at": when, "closed_at": when if closed else None,
              "merged_at": when if merged else None, "merge_commit_sha": self.sha() if closed else None,
              "assignee": None, "milestone": None, "commits_url": f"{api}/pulls/{number}/commits",
              "review_comments_url": f"{api}/pulls/{number}/comments",
              "review_comment_url": f"{api}/pulls/comments/{{number}}",
              "comments_url": f"{api}/issues/{number}/comments", "statuses_url": f"{api}/statuses/{head}",
              "head": {"label": f"{repo.owner}:topic-{number}", "ref": f"topic-{number}", "sha": head,
                       "user": self.user(repo.owner), "repo": side},
              "base": {"label": f"{repo.owner}:master", "ref": "master", "sha": self.sha(),
                       "user": self.user(repo.owner), "repo": side},
              "_links": {name: {"href": href} for name, href in (
                  ("self", f"{api}/pulls/{number}"), ("html", f"{web}/pull/{number}"),
                  ("issue", f"{api}/issues/{number}"), ("comments", f"{api}/issues/{number}/comments"),
                  ("review_comments", f"{api}/pulls/{number}/comments"),
                  ("review_comment", f"{api}/pulls/comments/{{number}}"),
                  ("commits", f"{api}/pulls/{number}/commits"), ("statuses", f"{api}/statuses/{head}"))},
              "merged": merged, "mergeable": None, "mergeable_state": "unknown",
              "merged_by": self.user(login) if merged else None, "comments": r.randint(0, 9),
              "review_comments": r.randint(0, 5), "commits": r.randint(1, 9), "additions": r.randint(1, 900),
              "deletions": r.randint(0, 300), "changed_files": r.randint(1, 30)}
        return pr

    def render(self, second: int, kind: str, repo: Repo, login: str, extra: dict) -> dict:
        r = self.rnd
        when = stamp(second)
        api, web = f"https://api.github.com/repos/{repo.name}", f"https://github.com/{repo.name}"
        payload: dict
        if kind == "PushEvent":
            shared = extra.get("shared")
            if shared:  # the second push of a pair: the same commits, already on the other ref
                commits = [dict(c, distinct=False) for c in shared["commits"]]
                head, before, distinct = shared["head"], self.sha(), 0
            else:
                count = extra.get("commits") or r.choices((1, 2, 3, 5, 12), (70, 14, 8, 6, 2))[0]
                commits = []
                for _ in range(min(count, 20)):
                    sha = self.sha()
                    commits.append({"sha": sha, "author": {"email": f"{login.lower()}@users.example.com",
                                                           "name": login},
                                    "message": extra.get("message") or self.message(), "distinct": True,
                                    "url": f"{api}/commits/{sha}"})
                head, before, distinct = commits[-1]["sha"], repo.head or self.sha(), len(commits)
                if shared is not None:
                    shared.update(commits=commits, head=head)
            ref = extra.get("ref", "refs/heads/master")
            if ref == "refs/heads/master":
                repo.head = head
            payload = {"push_id": 536_000_000 + r.randrange(10**7), "size": len(commits),
                       "distinct_size": distinct, "ref": ref, "head": head, "before": before, "commits": commits}
        elif kind in ("CreateEvent", "DeleteEvent"):
            ref_type = extra.get("ref_type") or r.choices(("branch", "tag", "repository"), (50, 15, 35))[0]
            ref = extra["ref"] if "ref" in extra else (
                None if ref_type == "repository" else
                f"v{r.randint(0, 3)}.{r.randint(0, 20)}.{r.randint(0, 9)}" if ref_type == "tag" else
                r.choice(("gh-pages", "develop", f"{r.choice(WORDS)}-{r.choice(WORDS)}", "patch-1")))
            if kind == "DeleteEvent" and ref_type == "repository":
                ref_type, ref = "branch", f"{r.choice(WORDS)}-{r.choice(WORDS)}"
            payload = {"ref": ref, "ref_type": ref_type}
            if kind == "CreateEvent":
                payload.update({"master_branch": "master", "description": repo.description})
            payload["pusher_type"] = "user"
        elif kind == "WatchEvent":
            payload = {"action": "started"}
        elif kind == "ForkEvent":
            name = repo.name.split("/", 1)[1]
            forkee = dict(self.repo_object(repo, f"{login}/{name}", login, when), public=True)
            payload = {"forkee": forkee}
        elif kind == "PullRequestEvent":
            action = extra.get("action") or r.choices(("opened", "closed"), (55, 45))[0]
            number = self._number(repo, action if action != "reopened" else "closed", repo.open_prs, extra)
            payload = {"action": action, "number": number, "pull_request": self._pull(repo, number, login, when,
                                                                                         action)}
        elif kind == "IssuesEvent":
            action = extra.get("action") or r.choices(("opened", "closed", "reopened"), (60, 37, 3))[0]
            number = self._number(repo, action, repo.open_issues, extra)
            payload = {"action": action, "issue": self._issue(repo, number, login, when,
                                                              "closed" if action == "closed" else "open")}
        elif kind == "IssueCommentEvent":
            number = r.choice(repo.open_issues) if repo.open_issues and r.random() < 0.7 else \
                r.randint(1, max(1, repo.number))
            cid = 68_000_000 + r.randrange(10**7)
            pull = r.random() < 0.35
            payload = {"action": "created", "issue": self._issue(repo, number, repo.owner, stamp(second - 86400),
                                                                 "open", pull),
                       "comment": {"url": f"{api}/issues/comments/{cid}",
                                   "html_url": f"{web}/{'pull' if pull else 'issues'}/{number}#issuecomment-{cid}",
                                   "issue_url": f"{api}/issues/{number}", "id": cid, "user": self.user(login),
                                   "created_at": when, "updated_at": when, "body": self.body(450)}}
            payload["issue"]["updated_at"] = when
        elif kind == "PullRequestReviewCommentEvent":
            number = r.choice(repo.open_prs) if repo.open_prs else r.randint(1, max(1, repo.number))
            cid = 22_000_000 + r.randrange(10**7)
            sha = self.sha()
            payload = {"action": "created", "comment": {
                "url": f"{api}/pulls/comments/{cid}", "id": cid,
                "diff_hunk": "@@ -1,7 +1,9 @@\n" + self.body(300), "path": f"src/{r.choice(WORDS)}.py",
                "position": r.randint(1, 40), "original_position": r.randint(1, 40), "commit_id": sha,
                "original_commit_id": sha, "user": self.user(login), "body": self.body(150),
                "created_at": when, "updated_at": when, "html_url": f"{web}/pull/{number}#discussion_r{cid}",
                "pull_request_url": f"{api}/pulls/{number}",
                "_links": {"self": {"href": f"{api}/pulls/comments/{cid}"},
                           "html": {"href": f"{web}/pull/{number}#discussion_r{cid}"},
                           "pull_request": {"href": f"{api}/pulls/{number}"}}},
                "pull_request": self._pull(repo, number, repo.owner, stamp(second - 3600), "opened")}
        elif kind == "CommitCommentEvent":
            cid = 9_000_000 + r.randrange(10**6)
            sha = repo.head or self.sha()
            payload = {"comment": {"url": f"{api}/comments/{cid}", "html_url": f"{web}/commit/{sha}#commitcomment-{cid}",
                                   "id": cid, "user": self.user(login), "position": None, "line": None, "path": None,
                                   "commit_id": sha, "created_at": when, "updated_at": when, "body": self.body(150)}}
        elif kind == "GollumEvent":
            page = f"{r.choice(WORDS).capitalize()}-{r.choice(WORDS)}"
            payload = {"pages": [{"page_name": page, "title": page.replace("-", " "), "summary": None,
                                  "action": r.choice(("edited", "created")), "sha": self.sha(),
                                  "html_url": f"{web}/wiki/{page}"}]}
        elif kind == "ReleaseEvent":
            tag = f"v{r.randint(0, 3)}.{r.randint(0, 20)}.{r.randint(0, 9)}"
            rid = 800_000 + r.randrange(10**6)
            payload = {"action": "published", "release": {
                "url": f"{api}/releases/{rid}", "assets_url": f"{api}/releases/{rid}/assets",
                "upload_url": f"https://uploads.github.com/repos/{repo.name}/releases/{rid}/assets{{?name}}",
                "html_url": f"{web}/releases/tag/{tag}", "id": rid, "tag_name": tag, "target_commitish": "master",
                "name": f"Release {tag}", "draft": False, "author": self.user(login), "prerelease": False,
                "created_at": when, "published_at": when, "assets": [],
                "tarball_url": f"{api}/tarball/{tag}", "zipball_url": f"{api}/zipball/{tag}", "body": self.body(300)}}
        elif kind == "MemberEvent":
            payload = {"member": self.user(self.login()), "action": "added"}
        else:  # PublicEvent
            payload = {}
        event = {"type": kind,
                 "actor": {"id": self.user_id(login), "login": login, "gravatar_id": "",
                           "url": f"https://api.github.com/users/{login}",
                           "avatar_url": f"https://avatars.githubusercontent.com/u/{self.user_id(login)}?"},
                 "repo": {"id": repo.id, "name": repo.name, "url": api},
                 "payload": payload, "public": True, "created_at": when}
        if repo.org:
            org = repo.owner
            event["org"] = {"id": self.user_id(org), "login": org, "gravatar_id": "",
                            "url": f"https://api.github.com/orgs/{org}",
                            "avatar_url": f"https://avatars.githubusercontent.com/u/{self.user_id(org)}?"}
        return event


def write(path: Path, hours: float = 12.0, per_hour: int = 12_000, seed: int = 1) -> dict:
    """Write the file (gzipped) to ``path``; returns what it holds (counts by type, repositories, patterns)."""
    gen = Generator(seed, hours, per_hour)
    gen.build()
    gen.plan.sort(key=lambda item: (item[0], item[1]))
    by_type: collections.Counter[str] = collections.Counter()
    per_repo: collections.Counter[str] = collections.Counter()
    actors: dict[str, set[str]] = collections.defaultdict(set)
    recent_heads: dict[tuple[str, str], tuple[int, str]] = {}
    same_head = 0
    next_id = 2_489_651_000
    size = 0
    with gzip.open(path, "wb", compresslevel=6) as out:
        for second, _, kind, repo, login, extra in gen.plan:
            event = gen.render(second, kind, repo, login, extra)
            next_id += gen.rnd.randint(1, 3)
            line = orjson.dumps({"id": str(next_id), **event}) + b"\n"
            size += len(line)
            out.write(line)
            by_type[kind] += 1
            per_repo[repo.name] += 1
            if repo.kind != "tail":
                actors[repo.name].add(login)
            if kind == "PushEvent":
                head, ref = event["payload"]["head"], event["payload"]["ref"]
                seen = recent_heads.get((repo.name, head))
                if seen is not None and seen[1] != ref and second - seen[0] <= 60:
                    same_head += 1
                recent_heads[(repo.name, head)] = (second, ref)
    events = len(gen.plan)
    histogram = collections.Counter(min(n, 3) for n in per_repo.values())
    return {
        "events": events, "bytes": size, "gz_bytes": path.stat().st_size, "hours": hours, "seed": seed,
        "repositories": len(per_repo),
        "repositories_with_1_event": histogram[1], "repositories_with_2_events": histogram[2],
        "push_share": round(by_type["PushEvent"] / events, 3),
        "pushes_same_head_as_an_earlier_push_to_another_ref": same_head,
        "by_type": dict(by_type.most_common()),
        "repeats": {"branch deleted and created again": gen.repeats["branch"],
                    "pull request closed, reopened, closed": gen.repeats["pr"],
                    "repository created twice": gen.repeats["repository"], "star given twice": gen.repeats["star"]},
        "machines": {repo.name: {"events": per_repo[repo.name], "actors": len(actors[repo.name])}
                     for repo in gen.machines},
        "popular": {repo.name: {"events": per_repo[repo.name], "distinct_actors": len(actors[repo.name])}
                    for repo, _ in gen.popular},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--per-hour", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(write(args.out, args.hours, args.per_hour, args.seed), indent=1))
