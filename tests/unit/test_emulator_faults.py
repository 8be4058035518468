"""Fault rules: matching, counting down, probability from a seeded generator."""

from __future__ import annotations

import pytest

from mns_consumer.emulator.faults import FaultRule, Faults


def test_a_rule_fires_its_number_of_times_and_then_disappears() -> None:
    """times=2 fires on two matching requests, then the rule is gone."""
    faults = Faults()
    faults.add(FaultRule(kind="error", service="mns", operation="ReceiveMessage", times=2))
    assert [len(faults.fire("mns", "ReceiveMessage")) for _ in range(3)] == [1, 1, 0]
    assert faults.rules() == []


def test_rules_only_fire_on_their_service_operation_and_queue() -> None:
    """A rule scoped to a service, operation and queue ignores every other request."""
    faults = Faults()
    faults.add(FaultRule(kind="latency", service="mns", operation="BatchDeleteMessage", queue="q1", seconds=1))
    assert faults.fire("dybaseapi", "BatchDeleteMessage", "q1") == []
    assert faults.fire("mns", "BatchReceiveMessage", "q1") == []
    assert faults.fire("mns", "BatchDeleteMessage", "q2") == []
    assert len(faults.fire("mns", "BatchDeleteMessage", "q1")) == 1


def test_probabilistic_rules_repeat_for_the_same_seed() -> None:
    """The same seed gives the same firing pattern, so a failing chaos run can be replayed."""

    def pattern(seed: int) -> list[int]:
        faults = Faults(seed)
        faults.add(FaultRule(kind="error", probability=0.3))
        return [len(faults.fire("mns", "ReceiveMessage")) for _ in range(200)]

    assert pattern(7) == pattern(7)
    assert 20 < sum(pattern(7)) < 100


def test_clearing_by_kind_keeps_the_other_rules() -> None:
    """clear(kind) removes only that kind; clear() removes everything."""
    faults = Faults()
    faults.add(FaultRule(kind="error"))
    faults.add(FaultRule(kind="latency", seconds=1))
    assert faults.clear("error") == 1
    assert [rule.kind for rule in faults.rules()] == ["latency"]
    assert faults.clear() == 1


@pytest.mark.parametrize(
    "fields",
    [{"kind": "explode"}, {"kind": "error", "service": "oss"}, {"kind": "error", "probability": 2.0}],
)
def test_invalid_rules_are_refused(fields: dict[str, object]) -> None:
    """Unknown kinds and services and impossible probabilities are ValueErrors."""
    with pytest.raises(ValueError, match=r"kind|service|probability"):
        FaultRule(**fields)  # type: ignore[arg-type]


def test_latency_jitter_spreads_each_round_trip_around_the_latency() -> None:
    """Each round trip draws its own delay in latency +- jitter; with no jitter it is exactly the latency."""
    faults = Faults(seed=3)
    rule = FaultRule(kind="latency", seconds=0.05, jitter_seconds=0.01)
    draws = [faults.delay_seconds(rule, 1) for _ in range(200)]
    assert all(0.04 <= d <= 0.06 for d in draws)
    assert max(draws) - min(draws) > 0.01
    assert 0.12 <= faults.delay_seconds(rule, 3) <= 0.18
    assert faults.delay_seconds(FaultRule(kind="latency", seconds=0.05), 2) == 0.1


def test_a_rule_is_removed_by_its_id_alone() -> None:
    """remove() takes one rule away and says whether it was live."""
    faults = Faults()
    first = faults.add(FaultRule(kind="latency", seconds=0.1))
    second = faults.add(FaultRule(kind="error"))
    assert faults.remove(first.rule_id) is True
    assert faults.remove(first.rule_id) is False
    assert faults.rules() == [second]
