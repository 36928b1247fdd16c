"""The scoring model on real GitHub activity: the two complete GH Archive hours in
``shared/real-github`` (see its README), replayed through the real scorer and differ
tasks on event-time ticks, exactly as ``osintd --replay`` runs them.

What a user of an intelligence feed needs from them, checked against the raw file:
a Top 10 of repositories where people gather (not single-account automation), and
changes that are few and about repositories that matter.
"""

from __future__ import annotations

import collections
import datetime as dt
import gzip
from pathlib import Path

import attrs
import orjson
import pytest
import trio

from osintd.differ import Differ, run_differ
from osintd.messages import RankingChange, TrendChange
from osintd.models import BoardState, EventBatch, ScoredItem, SourceItem
from osintd.normalize import from_events_api
from osintd.scorer import Scorer, ScoringModel, run_scorer

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-github" / "gharchive"
HOURS = ["2015-01-01-0.json.gz", "2015-01-01-12.json.gz"]

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="shared/real-github is not beside the repository")


@attrs.frozen
class Replayed:
    items: list[dict]                  # every line of the file, parsed
    events_broadcast: int              # new_event messages (every accepted event)
    changes: list[RankingChange | TrendChange]
    top: list[str]                     # the last scoreboard's Top 10


def _lines(name: str) -> list[dict]:
    # Split on "\n" only: some real lines hold raw U+2028/U+2029 inside JSON strings.
    return [orjson.loads(line) for line in gzip.decompress((REAL / name).read_bytes()).split(b"\n") if line.strip()]


async def _replay(items: list[dict]) -> Replayed:
    """The lines through the scorer and differ tasks (event-time ticks of 1 s, as a replay)."""
    events = [e for e in (from_events_api(item, source="replay") for item in items) if e is not None]
    scorer = Scorer(ScoringModel())
    sources_send, sources_receive = trio.open_memory_channel[SourceItem](8)
    scored_send, scored_receive = trio.open_memory_channel[ScoredItem](8)
    inbox_send, inbox_receive = trio.open_memory_channel(8)
    broadcast, changes, last = 0, [], None
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_scorer, scorer, sources_receive, scored_send, 1.0, lambda: None, False)
        nursery.start_soon(run_differ, Differ(), scored_receive, inbox_send, lambda: now)

        async def feed() -> None:
            async with sources_send:
                for start in range(0, len(events), 64):
                    await sources_send.send(events[start:start + 64])
        nursery.start_soon(feed)
        async for item in inbox_receive:
            if isinstance(item, EventBatch):
                broadcast += len(item.events)
            elif isinstance(item, BoardState):
                changes += [m for m in item.messages if isinstance(m, (RankingChange, TrendChange))]
                last = item.board
    assert last is not None
    return Replayed(items, broadcast, changes, [s.repo_full_name for s in last.top[:10]])


@pytest.fixture(scope="module", params=HOURS)
def hour(request) -> Replayed:
    return trio.run(_replay, _lines(request.param))


def _actors(items: list[dict]) -> dict[str, collections.Counter[str]]:
    """Each repository's events in the file, by actor (bots included)."""
    actors: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for item in items:
        actors[item["repo"]["name"]][item["actor"]["login"]] += 1
    return actors


def _people(counts: collections.Counter[str]) -> int:
    return sum(1 for login in counts if not login.endswith("[bot]"))


def test_the_top_10_is_where_people_gather(hour):
    actors = _actors(hour.items)
    assert len(hour.top) == 10
    for name in hour.top:
        counts = actors[name]
        assert len(counts) >= 3, (name, counts)                           # several distinct actors
        assert max(counts.values()) * 2 <= sum(counts.values()), (name, counts)  # none owns most of it
    # A plain "distinct people" ranking of the same hour: its 20 best (ties at the 20th included).
    by_people = sorted(actors, key=lambda name: -_people(actors[name]))
    cut = _people(actors[by_people[19]])
    most_people = {name for name in actors if _people(actors[name]) >= cut}
    assert len(set(hour.top) & most_people) >= 5, (hour.top, sorted(most_people))
    # …and the busiest accounts, the single-account automation of the hour, are not in it.
    machines = [name for name, counts in actors.items() if len(counts) == 1 and sum(counts.values()) >= 20]
    assert machines and not set(machines) & set(hour.top)


def test_changes_are_few_and_about_repositories_with_people(hour):
    trend = [m for m in hour.changes if isinstance(m, TrendChange)]
    ranking = [m for m in hour.changes if isinstance(m, RankingChange)]
    assert hour.events_broadcast > 7000
    assert len(trend) <= 0.03 * hour.events_broadcast, len(trend)        # a few percent at most
    assert len(ranking) <= 0.06 * hour.events_broadcast, len(ranking)
    assert trend and ranking  # the feed is not silent either
    # Every change says why, and most are about repositories with several distinct people.
    about = [m.people for m in hour.changes if m.people is not None]
    assert len(about) >= 0.9 * len(hour.changes)
    assert sum(1 for people in about if people >= 3) >= 0.8 * len(hour.changes)
