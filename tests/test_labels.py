"""The comm cap: bounded, fair to later comms, and every counter series monotonic."""

from __future__ import annotations

import random

from inotrace.labels import HALF_LIFE_S, OTHER, CounterFold, LabelCap


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fold_with_clock(cap: int, clock: Clock) -> CounterFold:
    fold = CounterFold(cap)
    fold.cap = LabelCap(cap, readmit=False, clock=clock)
    return fold


def test_heaviest_first_seen_are_admitted_first() -> None:
    cap = LabelCap(2, readmit=False)
    cap.admit([("a", 1), ("b", 5), ("c", 9)])
    assert [cap.label(v) for v in "abc"] == [OTHER, "b", "c"]


def test_name_cycling_does_not_push_later_comms_into_other_for_good() -> None:
    """A process cycled through 300 names (prctl) and took the 20 slots; once
    those names are quiet, a comm that starts later gets its own series."""
    clock = Clock()
    fold = fold_with_clock(20, clock)
    raw = {(f"evil{i}", ()): 1.0 for i in range(300)}
    first = fold.fold((c, r, v) for (c, r), v in raw.items())
    assert len(first) == 21 and first[(OTHER,)] == 280 and sum(first.values()) == 300
    clock.now += 5 * HALF_LIFE_S  # the cycling is over
    raw["kubelet", ()] = 3.0
    later = fold.fold((c, r, v) for (c, r), v in raw.items())
    assert later[("kubelet",)] == 3
    assert len(later) == 21 and sum(later.values()) == 303
    assert later[(OTHER,)] == 281  # the evicted name's 1 moved into other


def test_a_newcomer_needs_twice_the_activity_of_the_one_it_replaces() -> None:
    cap = LabelCap(1, readmit=True, clock=Clock())
    cap.admit([("steady", 10)])
    cap.admit([("rival", 20)])  # 20 is not more than 2 x 10
    assert (cap.label("steady"), cap.label("rival")) == ("steady", OTHER)
    cap.admit([("rival", 1)])  # 21 > 20
    assert (cap.label("steady"), cap.label("rival")) == (OTHER, "rival")


def test_counter_caps_keep_an_evicted_comm_in_other_gauge_caps_let_it_back() -> None:
    for readmit in (False, True):
        clock = Clock()
        cap = LabelCap(1, readmit=readmit, clock=clock)
        cap.admit([("a", 1)])
        clock.now += 10 * HALF_LIFE_S
        assert cap.admit([("b", 1)]) == ["a"]
        clock.now += 10 * HALF_LIFE_S
        cap.admit([("a", 1)])
        assert cap.label("a") == ("a" if readmit else OTHER)


def test_random_churn_keeps_every_series_monotonic_and_the_sum_exact(rng: random.Random) -> None:
    clock = Clock()
    fold = fold_with_clock(8, clock)
    raw: dict[tuple[str, tuple[str, ...]], float] = {}
    exported: dict[tuple[str, ...], float] = {}
    ended: set[tuple[str, ...]] = set()
    for step in range(200):
        for _ in range(rng.randrange(1, 30)):
            key = (f"c{int(rng.paretovariate(1.2)) % 60}", (rng.choice("xy"),))
            raw[key] = raw.get(key, 0.0) + rng.randrange(1, 50)
        clock.now += rng.expovariate(1 / 30)
        got = fold.fold((c, r, v) for (c, r), v in raw.items())
        where = f"step {step}"
        assert sum(got.values()) == sum(raw.values()), where
        assert len({k[0] for k in got} - {OTHER}) <= 8, where
        for labels, value in got.items():
            assert value >= exported.get(labels, 0.0), (where, labels)
            assert labels not in ended, (where, "an ended series came back", labels)
        ended |= exported.keys() - got.keys()
        exported = got
