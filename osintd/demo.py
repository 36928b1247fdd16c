"""The demo source: believable, reproducible synthetic GitHub activity.

Owns: the synthetic repositories, authors, event kinds, titles, bursts and
simulated upstream incidents of ``osintd --demo``.
Must not: score, announce or know about clients; it is just another source.

A few dozen well-known repositories get events in proportion to a long-tailed
popularity; now and then one of them bursts (several times its usual rate for
a while), which moves it up the ranking, makes it HOT and lets it cool down
afterwards.  Every so often a simulated GitHub rate limit is reported, so
dashboards can be seen handling ``error`` and ``system_status``; those are
marked ``simulated``.  Everything random comes from ``random.Random`` streams
seeded by ``--demo-seed`` (one for what events say, one for when live events
arrive): the same seed gives the same events in the same order (timestamps
follow the clock).

The warm-up history (past events that fill the ranking from the first second)
is sent as :class:`~osintd.models.Backfill`: scored, never broadcast as
``new_event`` (it is not news, and a client connecting at start-up would
otherwise get ~1,500 events at once).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import attrs
import trio

from osintd.models import Backfill, Event, EventType, SourceHealth

REPOSITORIES = (
    "openai/openai-python", "langchain-ai/langchain", "huggingface/transformers", "pytorch/pytorch",
    "vllm-project/vllm", "ollama/ollama", "ggerganov/llama.cpp", "microsoft/vscode",
    "facebook/react", "vercel/next.js", "rust-lang/rust", "golang/go", "nodejs/node",
    "kubernetes/kubernetes", "home-assistant/core", "astral-sh/uv", "astral-sh/ruff",
    "python/cpython", "django/django", "fastapi/fastapi", "pydantic/pydantic", "python-trio/trio",
    "pallets/flask", "numpy/numpy", "pandas-dev/pandas", "scikit-learn/scikit-learn",
    "microsoft/TypeScript", "denoland/deno", "sveltejs/svelte", "vuejs/core", "grafana/grafana",
    "prometheus/prometheus", "hashicorp/terraform", "apache/airflow", "pathwaycom/pathway",
    "tensorflow/tensorflow",
)

AUTHORS = (
    "alice", "bob", "carol", "dmitri", "eve", "farah", "gustavo", "hana", "ivan", "jules", "kenji",
    "lena", "mateo", "nadia", "oskar", "priya", "quentin", "rosa", "sven", "tamar", "umar", "vera",
    "wei", "ximena", "yusuf", "zoe",
)
BOTS = ("dependabot[bot]", "renovate[bot]", "github-actions[bot]")

SUBJECTS = (
    "chat completion", "streaming responses", "the tokenizer", "async client", "retry logic",
    "the CLI", "type hints", "memory usage", "the scheduler", "CUDA kernels", "the parser",
    "websocket reconnects", "rate limiting", "the docs site", "error messages", "the plugin API",
    "batch inference", "config loading", "the test harness", "Windows support",
)
COMMIT_TITLES = ("Fix bug in {s}", "Add support for {s}", "Refactor {s}", "Improve performance of {s}",
                 "Update docs for {s}", "Add tests for {s}", "Fix flaky test in {s}", "Clean up {s}")
PR_TITLES = ("Add {s} API", "Fix crash in {s}", "Speed up {s}", "Implement new {s} backend",
             "Refactor {s} for readability", "Document {s}", "Fix regression in {s}")
ISSUE_TITLES = ("{S} crashes on startup", "Bug: {s} returns wrong result", "Feature request: {s}",
                "Docs: {s} example is outdated", "Memory leak in {s}", "Slow {s} on large inputs")
BOT_TITLES = ("Bump {d} from {a} to {b}", "Update dependency {d} to v{b}")
DEPENDENCIES = ("requests", "urllib3", "pytest", "numpy", "typescript", "eslint", "tokio", "serde")

# (event_type, action, relative frequency)
KINDS: tuple[tuple[EventType, str | None, float], ...] = (
    (EventType.COMMIT, None, 30),
    (EventType.PULL_REQUEST, "opened", 10),
    (EventType.PULL_REQUEST, "merged", 7),
    (EventType.PULL_REQUEST, "closed", 3),
    (EventType.ISSUE, "opened", 10),
    (EventType.ISSUE, "closed", 6),
    (EventType.COMMENT, "created", 14),
    (EventType.REVIEW, "submitted", 7),
    (EventType.RELEASE, "published", 1.5),
    (EventType.STAR, "started", 8),
    (EventType.FORK, None, 2.5),
    (EventType.CREATE, "tag", 1.5),
)


@attrs.frozen
class DemoSettings:
    rate: float = 4.0               # events per second, on average
    seed: int | None = None
    history: float = 120.0          # seconds of past events emitted at start-up
    burst_every: float = 20.0       # mean seconds between bursts
    incidents: bool = True
    first_incident_after: float = 8.0
    incident_every: tuple[float, float] = (90.0, 180.0)
    incident_duration: float = 6.0
    #: (events per second, seconds) steps run through first; ``rate`` holds after them.
    ramp: tuple[tuple[float, float], ...] = ()

    def rate_at(self, elapsed: float) -> float:
        """The rate ``elapsed`` seconds after the live events started."""
        for rate, seconds in self.ramp:
            if elapsed < seconds:
                return rate
            elapsed -= seconds
        return self.rate


@attrs.define
class _Burst:
    repo: str
    multiplier: float
    until: float


class DemoSource:
    name = "demo"
    component = "github"  # it simulates GitHub, incidents included
    live = True

    def __init__(self, settings: DemoSettings, now: Callable[[], dt.datetime]) -> None:
        self.settings = settings
        self._now = now
        self._random = random.Random(settings.seed)
        # Live arrival times have a stream of their own, so that what an event says never
        # shifts when the next one arrives: a seed gives the same Poisson arrivals as any
        # other ``random.Random(seed).expovariate`` stream (the bench's reference uses one).
        self._arrivals = random.Random(settings.seed)
        self._popularity = [1.0 / (rank + 1) ** 0.9 for rank in range(len(REPOSITORIES))]
        self._kind_weights = [weight for _, _, weight in KINDS]
        self._numbers = {repo: self._random.randint(200, 20000) for repo in REPOSITORIES}
        self._versions = {repo: [self._random.randint(0, 3), self._random.randint(0, 20), 0] for repo in REPOSITORIES}
        self._bursts: list[_Burst] = []
        self._next_burst = 2.0
        self.generated = 0

    async def run(self, events: trio.MemorySendChannel[Event | list[Event] | Backfill],
                  health: trio.MemorySendChannel[SourceHealth]) -> None:
        history = self.history()  # first: the same seed gives the same history, whatever runs beside
        async with trio.open_nursery() as nursery:
            if self.settings.incidents:
                nursery.start_soon(self._incidents, health)
            for start in range(0, len(history), 64):
                await events.send(Backfill(history[start:start + 64]))
            await self._emit_live(events)
            nursery.cancel_scope.cancel()

    def history(self) -> list[Event]:
        """Past events, oldest first, so that the ranking is full from the first second:
        sent as backfill (scored, not broadcast).  Deterministic by seed, but for the
        timestamps, which end at the clock's now."""
        # At high rates a full history would be a flood at start-up: keep it to ~1,500 events.
        span = min(self.settings.history, 1500 / self.settings.rate) if self.settings.rate > 0 else 0.0
        start = self._now() - dt.timedelta(seconds=span)
        history = []
        elapsed = self._gap()
        while elapsed < span:
            history.append(self.make_event(start + dt.timedelta(seconds=elapsed), elapsed - span))
            elapsed += self._gap()
        return history

    async def _emit_live(self, events: trio.MemorySendChannel[Event | list[Event] | Backfill]) -> None:
        started = trio.current_time()
        due = started + self._gap(0.0)
        while True:
            await trio.sleep_until(due)
            # At high rates several events fall due per wake-up: emit them all, in batches.
            batch: list[Event] = []
            for _ in range(10_000):
                if due > trio.current_time():
                    break
                batch.append(self.make_event(self._now(), due - started))
                due += self._gap(due - started)
                if len(batch) == 64:
                    await events.send(batch)
                    batch = []
            if len(batch) == 1:
                await events.send(batch[0])
            elif batch:
                await events.send(batch)

    def _gap(self, elapsed: float | None = None) -> float:
        """Seconds to the next event (Poisson at the rate of the moment; history: the base rate)."""
        if elapsed is None:
            rate, stream = self.settings.rate, self._random
        else:
            rate, stream = self.settings.rate_at(elapsed), self._arrivals
        return stream.expovariate(rate) if rate > 0 else 3600.0

    # ---------------------------------------------------------------- events

    def make_event(self, at: dt.datetime, elapsed: float) -> Event:
        """One event at ``at``; ``elapsed`` is seconds since start (negative for history)."""
        rnd = self._random
        repo = self._pick_repo(elapsed)
        event_type, action, _ = rnd.choices(KINDS, self._kind_weights)[0]
        bot = event_type in (EventType.COMMIT, EventType.PULL_REQUEST) and rnd.random() < 0.06
        author = rnd.choice(BOTS) if bot else rnd.choice(AUTHORS)
        self.generated += 1
        title, url, data = self._details(repo, event_type, action, bot)
        event_id = f"{event_type}_{rnd.getrandbits(48):012x}"
        return Event(event_id=event_id, repo_full_name=repo, event_type=event_type, title=title,
                     author=author, url=url, created_at=at, action=action, is_bot=bot, data=data,
                     source="demo")

    def _pick_repo(self, elapsed: float) -> str:
        rnd = self._random
        if elapsed >= self._next_burst:
            # Mid-table repositories burst most often: that is what moves the ranking.
            repo = REPOSITORIES[rnd.randint(3, len(REPOSITORIES) - 1)]
            self._bursts.append(_Burst(repo, rnd.uniform(8, 14), elapsed + rnd.uniform(25, 60)))
            self._next_burst = elapsed + rnd.expovariate(1 / self.settings.burst_every)
        self._bursts = [b for b in self._bursts if b.until > elapsed]
        weights = list(self._popularity)
        total = sum(weights)
        for burst in self._bursts:
            weights[REPOSITORIES.index(burst.repo)] += total * 0.04 * burst.multiplier
        return rnd.choices(REPOSITORIES, weights)[0]

    def _details(self, repo: str, event_type: EventType, action: str | None,
                 bot: bool) -> tuple[str, str, dict[str, object]]:
        rnd = self._random
        subject = rnd.choice(SUBJECTS)
        base = f"https://github.com/{repo}"
        self._numbers[repo] += 1
        number = self._numbers[repo]
        if bot:
            dep = rnd.choice(DEPENDENCIES)
            title = rnd.choice(BOT_TITLES).format(d=dep, a=f"{rnd.randint(1, 3)}.{rnd.randint(0, 9)}",
                                                  b=f"{rnd.randint(3, 5)}.{rnd.randint(0, 9)}")
        elif event_type is EventType.COMMIT:
            title = rnd.choice(COMMIT_TITLES).format(s=subject)
        elif event_type in (EventType.PULL_REQUEST, EventType.REVIEW):
            title = rnd.choice(PR_TITLES).format(s=subject)
        elif event_type in (EventType.ISSUE, EventType.COMMENT):
            title = rnd.choice(ISSUE_TITLES).format(s=subject, S=subject.capitalize())
        else:
            title = ""
        if event_type is EventType.COMMIT:
            sha = f"{rnd.getrandbits(160):040x}"
            return title, f"{base}/commit/{sha}", {
                "sha": sha, "branch": "main", "additions": rnd.randint(1, 400),
                "deletions": rnd.randint(0, 200), "files_changed": rnd.randint(1, 25)}
        if event_type is EventType.PULL_REQUEST:
            return title, f"{base}/pull/{number}", {"number": number, "merged": action == "merged"}
        if event_type is EventType.ISSUE:
            return title, f"{base}/issues/{number}", {"number": number}
        if event_type is EventType.COMMENT:
            return f"Comment on: {title}", f"{base}/issues/{number}#issuecomment-{rnd.getrandbits(32)}", {
                "issue_number": number}
        if event_type is EventType.REVIEW:
            state = rnd.choice(("approved", "commented", "changes_requested"))
            return f"Review ({state}): {title}", f"{base}/pull/{number}#pullrequestreview", {
                "number": number, "state": state}
        if event_type in (EventType.RELEASE, EventType.CREATE):
            version = self._versions[repo]
            version[2] += 1
            if rnd.random() < 0.15:
                version[1], version[2] = version[1] + 1, 0
            tag = "v" + ".".join(map(str, version))
            if event_type is EventType.RELEASE:
                return f"Release {tag}", f"{base}/releases/tag/{tag}", {"tag_name": tag}
            return f"Tag {tag} created", f"{base}/tree/{tag}", {"ref": tag, "ref_type": "tag"}
        if event_type is EventType.STAR:
            return f"Starred {repo}", base, {}
        fork_owner = rnd.choice(AUTHORS)
        return f"Forked {repo}", f"https://github.com/{fork_owner}/{repo.split('/')[1]}", {
            "forkee": f"{fork_owner}/{repo.split('/')[1]}"}

    # ------------------------------------------------------------- incidents

    async def _incidents(self, health: trio.MemorySendChannel[SourceHealth]) -> None:
        settings = self.settings
        rnd = random.Random(self._random.random())  # its own stream: incidents do not shift events
        delay = settings.first_incident_after
        while True:
            await trio.sleep(delay)
            retry = settings.incident_duration
            await health.send(SourceHealth(
                component="github", state="degraded", error_code="GITHUB_RATE_LIMITED",
                message="GitHub API rate limit reached (simulated by the demo); polling paused",
                retry_in_seconds=retry, affected_repos=tuple(rnd.sample(REPOSITORIES, 3)), simulated=True))
            await trio.sleep(retry)
            await health.send(SourceHealth(component="github", state="ok",
                                           message="GitHub API reachable again (simulated by the demo)",
                                           simulated=True))
            delay = rnd.uniform(*settings.incident_every)
