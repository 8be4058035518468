"""The status projection's ordering rule and what each receipt contributes, as pure functions."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mns_consumer.sinks.status_tables import decision_key, fold, opt_out_update, status_update
from tests.support.status_reports import SENT_AT, make_opt_out, make_report


def test_a_final_report_beats_any_non_final_one_whatever_their_times() -> None:
    """Delivered at +1 s outranks pending at +1 hour."""
    assert decision_key("delivered", SENT_AT, "delivered", "DELIVERED") > decision_key(
        "pending", SENT_AT + timedelta(hours=1), None, None
    )


def test_among_final_reports_the_later_wins_and_a_tie_goes_to_delivered() -> None:
    """Later report time first; at the same time delivered beats failed whatever the codes."""
    later = SENT_AT + timedelta(seconds=1)
    assert decision_key("failed", later, "unknown", "ZZZ") > decision_key("delivered", SENT_AT, "delivered", "A")
    assert decision_key("delivered", SENT_AT, "delivered", "A") > decision_key("failed", SENT_AT, "unknown", "ZZZ")


def test_a_report_without_time_sorts_below_one_with_a_time() -> None:
    """No report time counts as the earliest."""
    assert decision_key("failed", None, "unknown", "X") < decision_key(
        "failed", datetime(1000, 1, 1, tzinfo=UTC), "a", ""
    )


def test_report_statuses_map_to_states_and_other_receipts_contribute_nothing() -> None:
    """expired is failed, pending stays pending; replies and reports without a biz_id feed no status row."""
    assert status_update(make_report(1, "expired", 5, "EXPIRED")).state == "failed"  # type: ignore[union-attr]
    assert status_update(make_report(1, "pending", None, None)).state == "pending"  # type: ignore[union-attr]
    assert status_update(make_report(1, "delivered", 5, "DELIVERED", biz_id=None)) is None
    assert status_update(make_opt_out(1)) is None
    assert opt_out_update(make_report(1, "delivered", 5, "DELIVERED")) is None
    assert opt_out_update(dataclasses.replace(make_opt_out(1), opt_out=False)) is None
    update = opt_out_update(make_opt_out(1, sign_name=None, dest_code="77"))
    assert update is not None
    assert (update.sign_name, update.dest_code, update.replies) == ("", "77", 1)
    odd = opt_out_update(dataclasses.replace(make_opt_out(1), extra={"dest_code": "9\x00" * 100}))
    assert odd is not None
    assert odd.dest_code == "9" * 64


_reports = st.lists(
    st.builds(
        make_report,
        st.just(1),
        st.sampled_from(("delivered", "failed", "expired", "pending")),
        st.sampled_from((None, 1, 2, 2)),
        st.sampled_from(("DELIVERED", "MK:0001", "IC:0015", None)),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(reports=_reports)
def test_folding_reports_in_any_order_gives_the_same_row(reports: list) -> None:  # type: ignore[type-arg]
    """The Python fold (used within a batch) is order-independent, like the SQL upsert it mirrors."""
    updates = [status_update(report) for report in reports]
    rows = {fold(order)[0] for order in itertools.permutations(updates)}  # type: ignore[arg-type]
    assert len(rows) == 1
    (row,) = rows
    assert row.receipts_seen == len(reports)
