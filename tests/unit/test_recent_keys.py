"""The recent-keys window: membership, order of eviction, and compact storage of hex keys."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from mns_consumer.sinks.recent_keys import RecentKeys


def key(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_the_oldest_keys_are_evicted_first_and_re_adding_refreshes_a_key() -> None:
    """Beyond capacity the least recently added keys go; adding a key again makes it recent."""
    window = RecentKeys(capacity=3)
    window.add_all([key(1), key(2), key(3)])
    window.add_all([key(1)])
    window.add_all([key(4)])
    assert key(2) not in window
    assert all(key(n) in window for n in (1, 3, 4))
    assert len(window) == 3


def test_hex_keys_differing_only_in_case_stay_distinct() -> None:
    """An upper-case spelling of a stored hex key is a different key."""
    window = RecentKeys()
    window.add_all([key(1)])
    assert key(1).upper() not in window


def test_unseen_keeps_order_and_collapses_repeats() -> None:
    """unseen() lists new keys once each, in their order; non-hex keys work as well."""
    window = RecentKeys()
    window.add_all([key(1), "plain-key"])
    assert window.unseen([key(2), key(1), "plain-key", key(2), "other"]) == [key(2), "other"]


@given(st.lists(st.text(min_size=1, max_size=70), max_size=50), st.lists(st.text(min_size=1, max_size=70), max_size=50))
def test_membership_is_exact_for_any_keys(stored: list[str], probed: list[str]) -> None:
    """Compact storage never confuses two keys: a key is a member exactly when it was added."""
    window = RecentKeys()
    window.add_all(stored)
    assert [k in window for k in probed] == [k in set(stored) for k in probed]


@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=12)), max_size=200))
def test_the_window_matches_a_reference_of_the_last_distinct_adds(steps: list[tuple[bool, int]]) -> None:
    """Under any mix of adds and re-adds, the window holds exactly the ``capacity`` most recently added keys."""
    window = RecentKeys(capacity=4)
    reference: list[str] = []  # most recent last, each key once
    for single, n in steps:
        added = [key(n)] if single else [key(n), key(n + 1)]
        window.add_all(added)
        for k in added:
            if k in reference:
                reference.remove(k)
            reference.append(k)
        del reference[:-4]
        assert len(window) == len(reference)
        assert all(k in window for k in reference)
        assert window.unseen([key(m) for m in range(14)]) == [key(m) for m in range(14) if key(m) not in reference]


def test_many_re_adds_keep_memory_bounded() -> None:
    """A key added over and over does not grow the window's order without bound."""
    window = RecentKeys(capacity=3)
    for _ in range(1000):
        window.add_all([key(1)])
    window.add_all([key(2), key(3)])
    assert len(window._order) <= 6
    window.add_all([key(4)])
    assert key(1) not in window
    assert all(key(n) in window for n in (2, 3, 4))
