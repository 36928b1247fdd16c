"""Identity: which events are the same activity (the rule in ``osintd/identity.py``)."""

from __future__ import annotations

import datetime as dt

import pytest

from osintd.identity import Identity, Verdict
from osintd.models import Event, EventType


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
