"""deploy/prometheus/alerts.yaml and deploy/grafana/mns-consumer.json against the metrics the daemon exports.

Every PromQL expression may name only metrics that :class:`~mns_consumer.observe.metrics.Metrics` registers
(plus Prometheus' own ``up``). ``promtool`` (Debian package ``prometheus``) checks the rules and replays
series through them; without it those tests skip, and fail when ``MNS_CONSUMER_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from mns_consumer.observe.metrics import Metrics
from tests.conftest import service_unavailable

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "mns-consumer.json"
TROUBLESHOOTING = REPO / "docs" / "troubleshooting.md"

SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
"""The series names prometheus_client exposes for a metric family of each type."""

PROMETHEUS_SERIES = {"up"}
"""Series Prometheus adds to every scrape, which expressions may use too."""

LABELS = {
    "queue", "message_type", "sink", "stage", "operation", "outcome", "class", "carrier", "le", "version", "instance",
    "job",
}  # fmt: skip
"""Labels an expression may group by: the daemon's own plus what a histogram, the info metric and a scrape add."""

PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp_max",
    "clamp_min", "count", "count_over_time", "count_values", "delta", "deriv", "floor", "group", "histogram_quantile",
    "idelta", "increase", "irate", "label_replace", "max", "max_over_time", "min", "min_over_time", "predict_linear",
    "quantile", "quantile_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc", "stddev", "sum",
    "sum_over_time", "time", "timestamp", "topk", "vector",
}  # fmt: skip
PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@cache
def exported_series() -> frozenset[str]:
    """Every series name a scrape of the daemon can carry, from a fresh :class:`Metrics`."""
    names: set[str] = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type])
    return frozenset(names)


@cache
def exported_families() -> frozenset[str]:
    return frozenset(family.name for family in Metrics(CollectorRegistry()).registry.collect())


def parse_promql(expr: str) -> tuple[set[str], set[str], set[str]]:
    """The metric names, function names and grouping labels of a PromQL expression (as dashboards write it)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels = {label.strip() for _, inside in GROUPING.findall(text) for label in inside.split(",") if label.strip()}
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\boffset\s+[0-9a-z]+", " ", text)
    metrics: set[str] = set()
    functions: set[str] = set()
    for match in IDENTIFIER.finditer(text):
        name = match.group(0)
        if name in PROMQL_KEYWORDS:
            # "and (", "or (", "unless (": binary operators before a parenthesis, not calls.
            continue
        if re.match(r"\s*\(", text[match.end() :]):
            functions.add(name)
        else:
            metrics.add(name)
    return metrics, functions, labels


def assert_uses_only_exported_metrics(expr: str, recorded: frozenset[str] = frozenset()) -> None:
    metrics, functions, labels = parse_promql(expr)
    assert metrics, f"no metric in {expr!r}"
    known = exported_series() | PROMETHEUS_SERIES | recorded
    assert metrics <= known, f"unknown metric(s) {metrics - known}"
    assert functions <= PROMQL_FUNCTIONS, f"unknown function(s) {functions - PROMQL_FUNCTIONS} in {expr!r}"
    assert labels <= LABELS, f"unknown label(s) {labels - LABELS} in {expr!r}"


def test_promql_parsing_sees_metrics_functions_and_grouping_labels() -> None:
    """The checker finds what it checks: metric names, function names and ``by`` labels, not strings or ranges."""
    metrics, functions, labels = parse_promql(
        'histogram_quantile(0.99, sum by (le, sink) (rate(mns_consumer_sink_write_seconds_bucket{queue=~"$queue",'
        ' stage="up"}[$__rate_interval]))) or absent(up{job="mns-consumer"})'
    )
    assert metrics == {"mns_consumer_sink_write_seconds_bucket", "up"}
    assert functions == {"histogram_quantile", "sum", "rate", "absent"}
    assert labels == {"le", "sink"}
    assert {"mns_consumer_receipts_received_total", "mns_consumer_receive_seconds_bucket"} <= exported_series()


# -- alerts ------------------------------------------------------------------------------------------------


@cache
def all_rules() -> tuple[dict[str, Any], ...]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return tuple(rule for group in document["groups"] for rule in group["rules"])


def alert_rules() -> tuple[dict[str, Any], ...]:
    return tuple(rule for rule in all_rules() if "alert" in rule)


def recording_rules() -> tuple[dict[str, Any], ...]:
    return tuple(rule for rule in all_rules() if "record" in rule)


def recorded_series() -> frozenset[str]:
    return frozenset(rule["record"] for rule in recording_rules())


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        service_unavailable("promtool is not installed (Debian package prometheus)")
    assert path is not None
    return path


def test_promtool_accepts_the_alert_rules() -> None:
    """``promtool check rules`` parses every expression and annotation template."""
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in result.stdout


def test_alert_expressions_use_only_metrics_the_daemon_exports() -> None:
    """A renamed or misspelt metric would make an alert silently never fire."""
    for rule in alert_rules():
        assert_uses_only_exported_metrics(rule["expr"], recorded_series())


def test_recording_rules_use_only_exported_metrics_and_follow_the_naming_convention() -> None:
    """Recorded series are built from exported metrics and named level:metric:operations, as Prometheus advises."""
    assert recording_rules(), "the delivery ratio is recorded"
    for rule in recording_rules():
        assert_uses_only_exported_metrics(rule["expr"])
        level, metric, operation = rule["record"].split(":")
        assert level, rule["record"]
        assert metric.startswith("mns_consumer_"), rule["record"]
        assert operation.startswith("rate"), rule["record"]


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    """On-call gets a routing severity and text saying what broke and what to do."""
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        assert len(annotations["description"].split()) >= 15, rule["alert"]
        assert annotations["runbook_url"].startswith("docs/troubleshooting.md"), rule["alert"]


def _anchors(markdown: str) -> set[str]:
    """MkDocs' heading anchors (its default toc slugs): lower case, punctuation dropped, spaces as hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
        anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_runbook_link_names_the_troubleshooting_page_and_an_anchor_it_has() -> None:
    """Each runbook_url is docs/troubleshooting.md, with at most an anchor that is one of its headings."""
    anchors = _anchors(TROUBLESHOOTING.read_text(encoding="utf-8"))
    wrong = []
    for rule in alert_rules():
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        if page != "docs/troubleshooting.md" or (anchor and anchor not in anchors):
            wrong.append(rule["annotations"]["runbook_url"])
    assert wrong == []


SERIES = 'job="mns-consumer", instance="host-a:9464", queue="Alicom-Queue-1-SmsReport", message_type="SmsReport"'
SERIES_LABELS = {
    "job": "mns-consumer",
    "instance": "host-a:9464",
    "queue": "Alicom-Queue-1-SmsReport",
    "message_type": "SmsReport",
}
QUEUE_LABELS = {"queue": "Alicom-Queue-1-SmsReport", "message_type": "SmsReport"}


def _scenario(alert: str, series: dict[str, str], expected: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """One promtool test: input series (1 minute apart), and the alerts expected at each evaluation time."""
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": labels} for labels in alerts]}
            for at, alerts in expected.items()
        ],
    }


def _scenarios() -> Iterator[dict[str, Any]]:
    yield _scenario(
        "MnsConsumerDown",
        {'up{job="mns-consumer", instance="host-a:9464"}': "1 1 0x20"},
        {
            "4m": [],
            "10m": [{"severity": "critical", "job": "mns-consumer", "instance": "host-a:9464"}],
        },
    )
    yield _scenario(
        "MnsConsumerDown",
        {'up{job="some-other-job", instance="host-b:9100"}': "1x20"},
        {"3m": [], "10m": [{"severity": "critical", "job": "mns-consumer"}]},
    )
    yield _scenario(
        "MnsConsumerNotReceiving",
        {f"mns_consumer_seconds_since_last_receive{{{SERIES}}}": "0+60x20"},
        {"6m": [], "10m": [{"severity": "critical", **SERIES_LABELS}]},
    )
    yield _scenario(
        "MnsConsumerBacklog",
        {f"mns_consumer_queue_oldest_message_age_seconds{{{SERIES}}}": "0 0 400x30"},
        {"8m": [], "15m": [{"severity": "warning", **QUEUE_LABELS}]},
    )
    # A sink outage from minute 2: receiving pauses (no more receives), and the lag gauge, read at
    # scrape time from the batch held in flight, grows a minute per minute from the last receive's
    # 0.0005 s. It passes 300 s at minute 6 and has stayed above it for 10 minutes at minute 16.
    yield _scenario(
        "MnsConsumerBacklog",
        {
            f"mns_consumer_seconds_since_last_receive{{{SERIES}}}": "1 1 60+60x30",
            f'mns_consumer_failures_total{{{SERIES}, stage="sink"}}': "0 0 3+3x30",
            f"mns_consumer_queue_oldest_message_age_seconds{{{SERIES}}}": "0.0005 0.0005 60.0005+60x30",
        },
        {"10m": [], "15m": [], "16m": [{"severity": "warning", **QUEUE_LABELS}]},
    )
    yield _scenario(
        "MnsConsumerFailures",
        {
            f'mns_consumer_failures_total{{{SERIES}, stage="sink"}}': "0+120x30",
            f'mns_consumer_failures_total{{{SERIES}, stage="delete"}}': "0+3x30",
        },
        {
            "5m": [],
            "20m": [{"severity": "warning", "queue": "Alicom-Queue-1-SmsReport", "stage": "sink"}],
        },
    )
    # A storm of 429s (1 a second) from minute 2 fires after 15 minutes; a burst of 5 minutes never does.
    throttled = f'mns_consumer_throttled_total{{{SERIES}, operation="BatchReceiveMessage"}}'
    yield _scenario(
        "MnsConsumerThrottled",
        {throttled: "0 0 60+60x30"},
        {"10m": [], "22m": [{"severity": "warning", **QUEUE_LABELS}]},
    )
    yield _scenario(
        "MnsConsumerThrottled",
        {throttled: "0 0 60+60x4 300x25"},
        {"10m": [], "25m": []},
    )
    yield _scenario(
        "MnsConsumerDeadLetters",
        {f"mns_consumer_receipts_dead_lettered_total{{{SERIES}}}": "0 0 0 0 1x30"},
        {"3m": [], "6m": [{"severity": "warning", **QUEUE_LABELS}], "25m": []},
    )
    yield _scenario(
        "MnsConsumerTokenExpiring",
        {f"mns_consumer_token_seconds_to_expiry{{{SERIES}}}": "3000 3000 30x20"},
        {"3m": [], "8m": [{"severity": "critical", **SERIES_LABELS}]},
    )
    yield _scenario(
        "MnsConsumerTokenRefreshFailing",
        {f'mns_consumer_failures_total{{{SERIES}, stage="token"}}': "0+1x40"},
        {"5m": [], "25m": [{"severity": "warning", **QUEUE_LABELS}]},
    )
    push = 'job="mns-consumer", instance="host-a:9464", queue="push:SmsReport", message_type="SmsReport"'
    push_labels = {"queue": "push:SmsReport", "message_type": "SmsReport"}
    yield _scenario(
        "MnsConsumerPushSpoolBacklog",
        {f"mns_consumer_push_spool_oldest_age_seconds{{{push}}}": "0 0 0+60x30"},
        {"8m": [], "20m": [{"severity": "warning", **push_labels}]},
    )
    yield _scenario(
        "MnsConsumerPushRejected",
        {
            f'mns_consumer_push_rejected_total{{{push}, stage="route"}}': "0+5x30",
            f'mns_consumer_push_rejected_total{{{push}, stage="spool"}}': "0 0 0 0 1x30",
        },
        {"3m": [], "6m": [{"severity": "warning", "queue": "push:SmsReport", "stage": "spool"}], "25m": []},
    )
    yield _scenario(
        "MnsConsumerPollerRestarting",
        {f"mns_consumer_poller_restarts_total{{{SERIES}}}": "0 0 0 1x30"},
        {"2m": [], "5m": [{"severity": "warning", **SERIES_LABELS}], "25m": []},
    )


DELIVERY = 'job="mns-consumer", instance="host-a:9464", queue="Alicom-Queue-1-SmsReport", message_type="SmsReport"'


def _deliveries(outcome: str, klass: str, **extra: str) -> str:
    labels = "".join(f', {name}="{value}"' for name, value in extra.items())
    return f'mns_consumer_deliveries_total{{{DELIVERY}, outcome="{outcome}", class="{klass}"{labels}}}'


def _delivery_scenarios() -> Iterator[dict[str, Any]]:
    # One report a second delivered throughout; from minute 10 one a second blocked as well: the ratio
    # falls to 0.5 by minute 16, the alert is pending from minute 12 and fires 15 minutes later.
    ratio = _scenario(
        "MnsConsumerDeliveryRatioLow",
        {_deliveries("delivered", "delivered"): "0+60x60", _deliveries("failed", "blocked"): "0x10 0+60x50"},
        {"5m": [], "20m": [], "35m": [{"severity": "warning", "message_type": "SmsReport"}]},
    )
    ratio["promql_expr_test"] = [
        {
            "expr": record,
            "eval_time": "30m",
            "exp_samples": [{"labels": f'{record}{{message_type="SmsReport"}}', "value": expected}],
        }
        for record, expected in (
            ("message_type:mns_consumer_delivery_success_ratio:rate5m", 0.5),
            ("message_type:mns_consumer_deliveries:rate5m", 2),
        )
    ]
    yield ratio
    # Too few reports (one every 5 minutes, all failing) is no reason to alert.
    yield _scenario(
        "MnsConsumerDeliveryRatioLow",
        {_deliveries("failed", "blocked"): "0+0.2x60"},
        {"40m": []},
    )
    # Carrier labels on: China Mobile delivers everything, China Unicom half of it.
    yield _scenario(
        "MnsConsumerDeliveryRatioLowForCarrier",
        {
            _deliveries("delivered", "delivered", carrier="china_mobile"): "0+60x60",
            _deliveries("delivered", "delivered", carrier="china_unicom"): "0+60x60",
            _deliveries("failed", "carrier_failure", carrier="china_unicom"): "0x10 0+60x50",
        },
        {
            "20m": [],
            "35m": [{"severity": "warning", "message_type": "SmsReport", "carrier": "china_unicom"}],
        },
    )
    # Six and a half hours of 1% invalid numbers; then blocked reports surge to a third of the traffic at
    # minute 430, and a class never seen before (content_rejected) appears too.
    yield _scenario(
        "MnsConsumerFailureClassSurge",
        {
            _deliveries("delivered", "delivered"): "0+100x500",
            _deliveries("failed", "invalid_number"): "0+1x500",
            _deliveries("failed", "blocked"): "0x430 0+50x69",
            _deliveries("failed", "content_rejected"): "_x430 0+50x69",
        },
        {
            "420m": [],
            "440m": [],
            "465m": [
                {"severity": "warning", "message_type": "SmsReport", "class": "blocked"},
                {"severity": "warning", "message_type": "SmsReport", "class": "content_rejected"},
            ],
        },
    )


def _backfill_scenarios() -> Iterator[dict[str, Any]]:
    backfill = 'job="node", instance="host-a:9100", queue="backfill", message_type="SmsReport"'
    yield _scenario(
        "MnsConsumerBackfillFailed",
        {f"mns_consumer_backfill_last_run_success{{{backfill}}}": "1 1 0x10"},
        {
            "1m": [],
            "3m": [
                {"severity": "warning", "instance": "host-a:9100", "queue": "backfill", "message_type": "SmsReport"}
            ],
        },
    )


def test_alerts_fire_on_the_series_they_describe_and_not_before(tmp_path: Path) -> None:
    """``promtool test rules`` replays series through the rules and compares the alerts at given times."""
    scenarios = [*_scenarios(), *_delivery_scenarios(), *_backfill_scenarios()]
    tested = {scenario["alert_rule_test"][0]["alertname"] for scenario in scenarios}
    assert tested == {rule["alert"] for rule in alert_rules()}, "every alert needs a scenario"
    # Annotations are templates of the values; this test is about when alerts fire and with which labels.
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(document), encoding="utf-8")
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": scenarios}),
        encoding="utf-8",
    )
    result = subprocess.run(
        [promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- dashboard ---------------------------------------------------------------------------------------------


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_dashboard_has_the_datasource_and_queue_variables() -> None:
    """A Prometheus datasource picker, and a queue picker filled from the received counter's labels."""
    assert dashboard()["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["queue"]["definition"] == "label_values(mns_consumer_receipts_received_total, queue)"
    assert variables["queue"]["datasource"]["uid"] == "${datasource}"


def test_dashboard_queries_use_only_metrics_the_daemon_exports() -> None:
    """Every panel query names exported metrics, through the datasource variable."""
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert_uses_only_exported_metrics(target["expr"])


def test_dashboard_queries_of_queue_metrics_follow_the_queue_variable() -> None:
    """Picking queues narrows every panel whose metric has a queue label."""
    unlabelled = {"mns_consumer_draining", "mns_consumer_build_info"}
    for expr in expressions():
        metrics, _, _ = parse_promql(expr)
        if metrics - unlabelled:
            assert 'queue=~"$queue"' in expr, expr


def test_dashboard_shows_every_metric_the_daemon_exports() -> None:
    """A new metric needs a panel; the latency histograms show p50 and p99."""
    text = " ".join(expressions())
    missing = [family for family in sorted(exported_families()) if family not in text]
    assert missing == []
    for histogram in ("sink_write_seconds", "receive_seconds", "receipt_delay_seconds", "delivery_latency_seconds"):
        for quantile in ("0.5", "0.99"):
            assert [
                expr
                for expr in expressions()
                if expr.startswith(f"histogram_quantile({quantile}, sum by (le")
                and f"mns_consumer_{histogram}_bucket" in expr
            ], f"no p{quantile} panel of {histogram}"


def test_dashboard_panels_have_unique_ids_and_fit_the_grid() -> None:
    """Grafana keys panels by id and lays them out on a 24-column grid."""
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
