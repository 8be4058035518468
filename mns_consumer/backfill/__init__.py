"""QuerySendDetails compensation runs: recover the delivery reports that never reached MNS or a push.

Each send the application names, ``(phone_number, send_date, biz_id)``, is queried, and its records
become the SmsReport receipts MNS would have carried, with the same dedupe keys (``source="query"``),
so sinks store each once however often a run is repeated. They go through the delivery core
(:mod:`mns_consumer.delivery`): rejections are dead-lettered; an outage is retried ``sink_attempts``
times, then the run stops with exit 4 rather than hang. The manual's Backfill page has the details.
"""

from mns_consumer.backfill.records import receipt_from_detail
from mns_consumer.backfill.run import (
    BackfillOptions,
    BackfillReport,
    SendFailure,
    describe_failure,
    events_with_textfile,
    run_backfill,
    unmatched_date_warning,
)
from mns_consumer.backfill.sends import Send, collect_sends, make_send, parse_send_date, read_sends

__all__ = [
    "BackfillOptions",
    "BackfillReport",
    "Send",
    "SendFailure",
    "collect_sends",
    "describe_failure",
    "events_with_textfile",
    "make_send",
    "parse_send_date",
    "read_sends",
    "receipt_from_detail",
    "run_backfill",
    "unmatched_date_warning",
]
