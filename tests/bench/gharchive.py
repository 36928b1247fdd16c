"""A synthetic GH Archive file for the ingest benchmark.

One Events API event per line, in the shapes GH Archive has carried (the
legacy Events API payloads: PushEvent with ``size``/``commits``, full-ish
pull request and issue objects), sorted by ``created_at`` over one hour (a GH
Archive file holds one hour: some 100,000 to 250,000 events), for 10,000
repositories with a long-tailed popularity.  Every event has its own
natural key (fresh shas, numbers, logins, refs, ids), so osintd's dedupe
keeps all of them: the number of lines is the number of events to ingest.

    python gharchive.py OUT.json [--events 200000] [--seed 1] [--span 3600] [--repos 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import random
import zlib
from pathlib import Path

END = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)

# (type, weight): roughly GH Archive's mix.
KINDS = (("PushEvent", 48), ("CreateEvent", 12), ("WatchEvent", 9), ("PullRequestEvent", 9),
         ("IssueCommentEvent", 7), ("IssuesEvent", 4), ("DeleteEvent", 3), ("ForkEvent", 2),
         ("PullRequestReviewEvent", 3), ("ReleaseEvent", 1), ("PullRequestReviewCommentEvent", 2))
WORDS = ("fix", "add", "update", "remove", "refactor", "parser", "tests", "docs", "cache", "client",
         "server", "memory", "leak", "retry", "timeout", "config", "build", "release", "typo", "api")


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Generator:
    def __init__(self, seed: int, repos: int = 10_000) -> None:
        self.rnd = random.Random(seed)
        self.repos = [f"org{i % 400}/project-{i}" for i in range(repos)]
        self.repo_ids = {repo: 10**6 + i for i, repo in enumerate(self.repos)}
        self.cum_weights = list(itertools.accumulate(1.0 / (rank + 1) ** 1.1 for rank in range(repos)))
        self.kinds = [k for k, _ in KINDS]
        self.kind_cum = list(itertools.accumulate(w for _, w in KINDS))
        self.counter = 0
        self.numbers = {repo: 0 for repo in self.repos}
        self.open_prs: dict[str, list[int]] = {repo: [] for repo in self.repos}
        self.open_issues: dict[str, list[int]] = {repo: [] for repo in self.repos}

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _title(self) -> str:
        r = self.rnd
        return " ".join(r.choice(WORDS) for _ in range(r.randint(3, 8))).capitalize()

    def _user(self, login: str) -> dict:
        uid = zlib.crc32(login.encode())
        return {"login": login, "id": uid, "url": f"https://api.github.com/users/{login}",
                "html_url": f"https://github.com/{login}", "type": "User", "site_admin": False}

    def event(self, at: dt.datetime) -> dict:
        r = self.rnd
        n = self._next()
        repo = r.choices(self.repos, cum_weights=self.cum_weights)[0]
        kind = r.choices(self.kinds, cum_weights=self.kind_cum)[0]
        login = f"user{r.randint(1, 50000)}"
        created = _stamp(at)
        api = f"https://api.github.com/repos/{repo}"
        web = f"https://github.com/{repo}"
        payload: dict
        if kind == "PushEvent":
            commits = []
            for _ in range(r.randint(1, 3)):
                sha = f"{r.getrandbits(160):040x}"
                commits.append({"sha": sha, "author": {"email": f"{login}@example.com", "name": login},
                                "message": self._title(), "distinct": True, "url": f"{api}/commits/{sha}"})
            payload = {"push_id": 10**10 + n, "size": len(commits), "distinct_size": len(commits),
                       "ref": "refs/heads/main", "head": commits[-1]["sha"],
                       "before": f"{r.getrandbits(160):040x}", "commits": commits}
        elif kind in ("CreateEvent", "DeleteEvent"):
            ref_type = "tag" if r.random() < 0.3 else "branch"
            ref = f"v{n}.0.0" if ref_type == "tag" else f"feature-{n}"
            payload = {"ref": ref, "ref_type": ref_type, "pusher_type": "user"}
            if kind == "CreateEvent":
                payload.update({"master_branch": "main", "description": self._title()})
        elif kind == "WatchEvent":
            login = f"stargazer{n}"
            payload = {"action": "started"}
        elif kind == "ForkEvent":
            name = repo.split("/")[1]
            payload = {"forkee": {"id": n, "name": name, "full_name": f"forker{n}/{name}",
                                  "owner": self._user(f"forker{n}"), "private": False,
                                  "html_url": f"https://github.com/forker{n}/{name}",
                                  "created_at": created, "updated_at": created, "fork": True}}
        elif kind == "PullRequestEvent":
            opened = not self.open_prs[repo] or r.random() < 0.55
            if opened:
                self.numbers[repo] += 1
                number = self.numbers[repo]
                self.open_prs[repo].append(number)
            else:
                number = self.open_prs[repo].pop(r.randrange(len(self.open_prs[repo])))
            merged = not opened and r.random() < 0.7
            pr = {"url": f"{api}/pulls/{number}", "id": n, "html_url": f"{web}/pull/{number}",
                  "number": number, "state": "open" if opened else "closed", "locked": False,
                  "title": self._title(), "user": self._user(login), "body": self._title() * 3,
                  "created_at": created, "updated_at": created,
                  "closed_at": None if opened else created, "merged_at": created if merged else None,
                  "head": {"ref": f"topic-{n}", "sha": f"{r.getrandbits(160):040x}"},
                  "base": {"ref": "main", "sha": f"{r.getrandbits(160):040x}"},
                  "draft": False, "merged": merged, "comments": r.randint(0, 9), "commits": r.randint(1, 9),
                  "additions": r.randint(1, 900), "deletions": r.randint(0, 300),
                  "changed_files": r.randint(1, 30)}
            payload = {"action": "opened" if opened else "closed", "number": number, "pull_request": pr}
        elif kind == "IssuesEvent":
            opened = not self.open_issues[repo] or r.random() < 0.6
            if opened:
                self.numbers[repo] += 1
                number = self.numbers[repo]
                self.open_issues[repo].append(number)
            else:
                number = self.open_issues[repo].pop(r.randrange(len(self.open_issues[repo])))
            payload = {"action": "opened" if opened else "closed", "issue": {
                "url": f"{api}/issues/{number}", "id": n, "html_url": f"{web}/issues/{number}",
                "number": number, "title": self._title(), "user": self._user(login),
                "state": "open" if opened else "closed", "comments": r.randint(0, 20),
                "created_at": created, "updated_at": created, "closed_at": None if opened else created,
                "body": self._title() * 2}}
        elif kind in ("IssueCommentEvent", "PullRequestReviewCommentEvent"):
            number = r.randint(1, max(1, self.numbers[repo]))
            comment = {"id": n, "html_url": f"{web}/issues/{number}#issuecomment-{n}", "user": self._user(login),
                       "created_at": created, "updated_at": created, "body": self._title() * 2}
            if kind == "IssueCommentEvent":
                payload = {"action": "created", "comment": comment,
                           "issue": {"number": number, "title": self._title(), "state": "open",
                                     "html_url": f"{web}/issues/{number}"}}
            else:
                comment.update({"path": "src/main.py", "pull_request_review_id": n + 1})
                payload = {"action": "created", "comment": comment,
                           "pull_request": {"number": number, "title": self._title(),
                                            "html_url": f"{web}/pull/{number}"}}
        elif kind == "PullRequestReviewEvent":
            number = r.randint(1, max(1, self.numbers[repo]))
            payload = {"action": "created", "review": {
                "id": n, "user": self._user(login), "state": r.choice(("approved", "commented")),
                "html_url": f"{web}/pull/{number}#pullrequestreview-{n}", "submitted_at": created,
                "commit_id": f"{r.getrandbits(160):040x}"},
                "pull_request": {"number": number, "title": self._title(), "html_url": f"{web}/pull/{number}"}}
        else:  # ReleaseEvent
            tag = f"v{n}.{r.randint(0, 9)}"
            payload = {"action": "published", "release": {
                "id": n, "tag_name": tag, "name": f"Release {tag}", "html_url": f"{web}/releases/tag/{tag}",
                "author": self._user(login), "prerelease": False, "created_at": created,
                "published_at": created, "assets": [], "body": self._title() * 4}}
        return {"id": str(30_000_000_000 + n), "type": kind,
                "actor": {"id": zlib.crc32(login.encode()), "login": login, "display_login": login,
                          "gravatar_id": "", "url": f"https://api.github.com/users/{login}",
                          "avatar_url": f"https://avatars.githubusercontent.com/u/{n % 10**6}?"},
                "repo": {"id": self.repo_ids[repo], "name": repo, "url": api},
                "payload": payload, "public": True, "created_at": created}


def write(path: Path, events: int, seed: int = 1, span: float = 3600.0, repos: int = 10_000) -> dict:
    """Write ``events`` lines to ``path`` over ``span`` seconds of event time; returns counts and size."""
    gen = Generator(seed, repos)
    start = END - dt.timedelta(seconds=span)
    by_type: dict[str, int] = {}
    size = 0
    with open(path, "w", encoding="utf-8") as out:
        for i in range(events):
            item = gen.event(start + dt.timedelta(seconds=span * i / events))
            line = json.dumps(item, separators=(",", ":")) + "\n"
            size += len(line)
            out.write(line)
            by_type[item["type"]] = by_type.get(item["type"], 0) + 1
    return {"events": events, "bytes": size, "span_seconds": span, "repositories": repos, "by_type": by_type}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--span", type=float, default=3600.0, help="seconds of event time the file covers")
    parser.add_argument("--repos", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps(write(args.out, args.events, args.seed, args.span, args.repos)))
