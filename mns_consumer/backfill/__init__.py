"""QuerySendDetails compensation runs: recover the delivery reports that never reached MNS or a push.

Receipts can be lost (reference 1 step 5, 6): a queue that was not consumed for days, a push endpoint
that was down through Alibaba's three retries. Alibaba's answer is QuerySendDetails, which reports
each send of the last 30 days. A run takes a list of sends, ``(phone_number, send_date, biz_id)``, as
the application knows them from SendSms; queries each (a few at a time, paged, retried); turns every
record into the mainland SmsReport receipt the MNS path would have produced (same fields, same
normalization, **same dedupe key**, ``source="query"``); and writes them to the sinks SmsReport is routed
to, with the daemon's semantics:

* **Idempotent.** A receipt that MNS or a push already delivered has the same dedupe key, so sinks
  store it once; rerunning a backfill stores nothing twice.
* **BizId required.** The records carry no BizId (reference 6.2), and the dedupe key of a report is
  (biz_id, phone_number, status), so only the caller's BizId can make the key match.
* **Pending.** SendStatus 1 (no carrier report yet) is not a receipt: such records are counted and
  skipped, unless ``include_pending`` stores them with status ``pending`` (a different key, so the real
  report stored later is kept too).
* **Rejections** go to the dead-letter sink with the sink's reason; **outages** are retried with
  back-off ``sink_attempts`` times, then the run stops (exit 4) instead of hanging: nothing is lost,
  and the run can simply be repeated.
* **Failures per send** (a day outside the window, a refused query) are reported with where the send
  was given (``sends.csv:12``) and do not stop the others; an AccessKey Alibaba refuses, or a Dysmsapi
  that stays unavailable through every retry, stops the run.

Sends come from the command line or from a file (:func:`read_sends`): CSV with a header row, or JSON
Lines, with the columns ``phone_number``, ``send_date`` (``YYYY-MM-DD`` or ``YYYYMMDD``, a Beijing
calendar day) and ``biz_id``; other columns are ignored.
"""

from mns_consumer.backfill.records import MESSAGE_TYPE, receipt_from_detail
from mns_consumer.backfill.run import (
    BackfillOptions,
    BackfillReport,
    SendFailure,
    StoredKeys,
    describe_failure,
    events_with_textfile,
    run_backfill,
    unmatched_date_warning,
)
from mns_consumer.backfill.sends import COLUMNS, Send, collect_sends, make_send, parse_send_date, read_sends

__all__ = [
    "COLUMNS",
    "MESSAGE_TYPE",
    "BackfillOptions",
    "BackfillReport",
    "Send",
    "SendFailure",
    "StoredKeys",
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
