"""The contract every sink keeps, checked against each sink's real destination.

File, SQLite, PostgreSQL, MariaDB, webhook (a local HTTP receiver) and S3 (moto's server) all: accept
a batch durably, are idempotent on ``dedupe_key``, report permanent rejects as data, and raise
``SinkUnavailable`` when their destination is gone, then work again once it is back.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mns_consumer.errors import SinkUnavailable
from mns_consumer.sinks.base import Sink, SinkResult
from tests.support.receipts import make_batch, make_receipt
from tests.support.sink_envs import ENV_MODULES, SinkEnv


@pytest.fixture(params=sorted(ENV_MODULES))
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkEnv]:
    """One sink environment per sink kind."""
    module = importlib.import_module(ENV_MODULES[request.param])
    environment: SinkEnv = module.make_env(request.param, tmp_path)
    try:
        yield environment
    finally:
        environment.close()


@pytest.fixture
def sink(env: SinkEnv) -> Iterator[Sink]:
    """The environment's sink, opened, and closed afterwards."""
    made = env.make_sink()
    made.open()
    try:
        yield made
    finally:
        made.close()


def test_sink_accepts_a_batch_and_stores_every_receipt(env: SinkEnv, sink: Sink) -> None:
    """Every receipt of a batch is reported accepted and is found at the destination."""
    batch = make_batch(16)
    result = sink.write(batch)
    assert result == SinkResult(accepted=frozenset(r.dedupe_key for r in batch))
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in batch)


def test_sink_is_idempotent_on_the_dedupe_key(env: SinkEnv, sink: Sink) -> None:
    """Writing the same receipts again accepts them and stores nothing twice."""
    batch = make_batch(8)
    sink.write(batch)
    again = sink.write([*batch[:4], *make_batch(2, start=100)])
    assert again.accepted == frozenset(r.dedupe_key for r in [*batch[:4], *make_batch(2, start=100)])
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in [*batch, *make_batch(2, start=100)])


def test_duplicates_inside_one_batch_are_stored_once(env: SinkEnv, sink: Sink) -> None:
    """Two copies of a receipt in one batch (MNS duplicates) are accepted and stored once."""
    receipt = make_receipt(1)
    result = sink.write([receipt, make_receipt(2), receipt])
    assert receipt.dedupe_key in result.accepted
    assert sorted(env.stored_keys()) == sorted([receipt.dedupe_key, make_receipt(2).dedupe_key])


def test_sink_reports_permanent_rejects_and_stores_the_rest(env: SinkEnv, sink: Sink) -> None:
    """A receipt the sink can never store is rejected with a reason; the others are accepted."""
    bad = env.rejectable(make_receipt(99))
    if bad is None:
        pytest.skip("this sink accepts every well-formed receipt; it has no permanent rejects")
    good = make_batch(3)
    result = sink.write([*good, bad])
    assert set(result.rejected) == {bad.dedupe_key}
    assert result.rejected[bad.dedupe_key]
    assert result.accepted == frozenset(r.dedupe_key for r in good)
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in good)


def test_sink_raises_unavailable_while_its_destination_is_gone_and_recovers(env: SinkEnv, sink: Sink) -> None:
    """With the destination gone, write raises SinkUnavailable; once back, the next write succeeds."""
    sink.write(make_batch(2))
    env.make_unavailable()
    try:
        with pytest.raises(SinkUnavailable):
            sink.write(make_batch(2, start=10))
    finally:
        env.restore()
    later = make_batch(2, start=20)
    assert sink.write(later).accepted == frozenset(r.dedupe_key for r in later)
    assert set(r.dedupe_key for r in later) <= set(env.stored_keys())


def test_sink_survives_close_and_reopen(env: SinkEnv) -> None:
    """A new sink instance over the same destination keeps absorbing duplicates of what was stored."""
    first = env.make_sink()
    first.open()
    first.write(make_batch(3))
    first.close()
    second = env.make_sink()
    second.open()
    try:
        assert second.write(make_batch(3)).accepted == frozenset(r.dedupe_key for r in make_batch(3))
    finally:
        second.close()
    assert sorted(env.stored_keys()) == sorted(r.dedupe_key for r in make_batch(3))
