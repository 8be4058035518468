"""Every Kubernetes manifest under ``deploy/kubernetes``, validated as a cluster would validate it.

Core kinds go through ``kubernetes-validate`` (the official OpenAPI schemas of the Kubernetes release it
ships, strict: an unknown field is an error, as ``kubectl apply --validate=strict`` makes it). The two
custom resources go through models generated from their projects' CRD schemas (``cloudcoil-models-keda``
for KEDA's ScaledObject, ``cloudcoil-models-prometheus-operator`` for the ServiceMonitor); those models
ignore unknown fields, so a manifest must also survive a round trip through its model unchanged, which
turns a misspelt field into a failure. The configuration inside each ConfigMap goes through the real
``check-config`` command, and the scale-out recipe's parts are checked against each other (selectors,
ports, the lag metric the ScaledObject queries, the grace period against the drain timeout).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from pydantic import BaseModel

from mns_consumer.config import parse_config
from tests.conftest import service_unavailable

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
SCALE_OUT = KUBERNETES / "scale-out"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
METRICS_SOURCE = REPO / "mns_consumer" / "observe" / "metrics.py"
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes release the manifests promise to fit (the schemas of newer ones are a superset
for these kinds); ``kubernetes-validate`` ships schemas for every release since 1.13."""

CUSTOM_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
}
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def manifest_files() -> list[Path]:
    """Every manifest file, kustomizations aside (they are kustomize's input, not cluster objects)."""
    return sorted(path for path in KUBERNETES.rglob("*.yaml") if path.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def all_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for doc in documents(path):
            yield path, doc


def scale_out() -> dict[str, dict[str, Any]]:
    """The scale-out recipe's objects by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(SCALE_OUT.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in documents(path):
            assert doc["kind"] not in found, f"two {doc['kind']} objects in the scale-out recipe"
            found[doc["kind"]] = doc
    return found


def differences(given: Any, kept: Any, where: str = "") -> list[str]:
    """Paths present in ``given`` that the model dropped or changed (the model keeps what it knows)."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [where or "."]
        found: list[str] = []
        for key, value in given.items():
            if key not in kept:
                found.append(f"{where}.{key}")
            else:
                found.extend(differences(value, kept[key], f"{where}.{key}"))
        return found
    if isinstance(given, list):
        if not isinstance(kept, list) or len(given) != len(kept):
            return [where]
        return [
            diff
            for i, (a, b) in enumerate(zip(given, kept, strict=True))
            for diff in differences(a, b, f"{where}[{i}]")
        ]
    return [] if given == kept else [where]


def validate(doc: dict[str, Any]) -> None:
    """Raise when ``doc`` does not fit its kind's schema (core kinds) or its CRD model (custom kinds)."""
    model = CUSTOM_MODELS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if model is None:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return
    parsed = model.model_validate(doc)
    dropped = differences(doc, parsed.model_dump(mode="json", by_alias=True, exclude_unset=True))
    if dropped:
        raise ValueError(f"{doc['kind']} fields unknown to its schema: {', '.join(dropped)}")


@pytest.mark.parametrize(
    ("path", "doc"),
    list(all_documents()),
    ids=[f"{path.relative_to(KUBERNETES)}:{doc['kind']}" for path, doc in all_documents()],
)
def test_manifest_fits_its_schema(path: Path, doc: dict[str, Any]) -> None:
    validate(doc)


@pytest.mark.parametrize(
    ("kind", "break_it"),
    [
        ("Deployment", lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriod=60)),
        ("Deployment", lambda d: d["spec"].update(replicas="two")),
        ("PodDisruptionBudget", lambda d: d["spec"].update(maxUnavialable=1)),
        ("ScaledObject", lambda d: d["spec"].update(minReplicaCont=1)),
        ("ScaledObject", lambda d: d["spec"].update(maxReplicaCount="four")),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(intervall="15s")),
    ],
)
def test_the_validation_refuses_a_broken_manifest(kind: str, break_it: Any) -> None:
    """The checks above can fail: a misspelt field or a wrong type in each kind is refused."""
    doc = copy.deepcopy(scale_out()[kind])
    validate(doc)
    break_it(doc)
    with pytest.raises(Exception):  # noqa: B017,PT011 - each validator raises its own error type
        validate(doc)


def test_kustomization_lists_every_manifest_of_the_recipe() -> None:
    listed = yaml.safe_load((SCALE_OUT / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    present = sorted(p.name for p in SCALE_OUT.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def secret_variables(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        item["name"]: f"dummy-secret-value-{item['name'].lower()}"
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def field_variables(deployment: dict[str, Any]) -> set[str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"] for item in container.get("env", []) if "fieldRef" in item.get("valueFrom", {})}


def test_scale_out_configuration_passes_check_config(tmp_path: Path) -> None:
    """The ConfigMap's config.yaml passes the real ``check-config``, with every variable it needs from the pod."""
    recipe = scale_out()
    text: str = recipe["ConfigMap"]["data"]["config.yaml"]
    deployment = recipe["Deployment"]
    secrets = secret_variables(deployment)
    required = {name for name, fallback in VARIABLE.findall(text) if not fallback}
    assert required <= set(secrets) | field_variables(deployment), "a ${NAME} the pod does not set"
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in secrets
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD")}
    env |= secrets | {"POD_NAME": "mns-consumer-5d8f7-abcde"}
    checked = subprocess.run(
        [sys.executable, "-m", "mns_consumer", "check-config", str(config_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for name, value in secrets.items():
        if re.search("SECRET|PASSWORD|TOKEN", name):
            assert value not in checked.stdout + checked.stderr, f"{name} printed"


def test_scale_out_pods_drain_within_their_grace_period_and_probe_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = scale_out()
    deployment = recipe["Deployment"]
    for name, value in secret_variables(deployment).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POD_NAME", "mns-consumer-0")
    config = parse_config(yaml.safe_load(recipe["ConfigMap"]["data"]["config.yaml"]), "scale-out ConfigMap")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] >= config.drain_timeout_seconds + 15
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert config.http.listen is not None
    port = int(config.http.listen.rpartition(":")[2])
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == port
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["cpu"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    # Dead letters land on the shared claim, one file per pod.
    assert config.dead_letter is not None
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [path for path in mounts if str(config.dead_letter.path).startswith(path + "/")]
    claim = volumes[mounts[mount]]["persistentVolumeClaim"]["claimName"]
    assert claim == recipe["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadWriteMany" in recipe["PersistentVolumeClaim"]["spec"]["accessModes"]
    assert "mns-consumer-0" in str(config.dead_letter.path)
    # SMQ's abnormal-consumption rule: 5,000 received-and-undeleted messages per queue, over all replicas.
    in_flight = max(queue.max_in_flight_messages for queue in config.queues)
    assert recipe["ScaledObject"]["spec"]["maxReplicaCount"] * in_flight < 5000 / 2, "see scaledobject.yaml"


def test_scale_out_parts_select_the_same_pods() -> None:
    recipe = scale_out()
    labels = recipe["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert recipe["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert recipe["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert recipe["Service"]["spec"]["selector"].items() <= labels.items()
    service_labels = recipe["Service"]["metadata"]["labels"]
    assert recipe["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert recipe["ServiceMonitor"]["spec"]["endpoints"][0]["port"] in {
        p["name"] for p in recipe["Service"]["spec"]["ports"]
    }
    assert recipe["ScaledObject"]["spec"]["scaleTargetRef"]["name"] == recipe["Deployment"]["metadata"]["name"]
    assert "replicas" not in recipe["Deployment"]["spec"], "the ScaledObject owns the replica count"


def test_scaled_object_queries_the_lag_gauge_under_the_alerts_job_label() -> None:
    """The query names a gauge the daemon exports, under the job label the alerts and the ServiceMonitor use."""
    recipe = scale_out()
    (trigger,) = recipe["ScaledObject"]["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    metric = re.search(r"(mns_consumer_[a-z_]+)", query)
    assert metric is not None
    assert f'"{metric.group(1)}"' in METRICS_SOURCE.read_text(encoding="utf-8")
    job = re.search(r'job="([^"]+)"', query)
    assert job is not None
    assert f'job="{job.group(1)}"' in ALERTS.read_text(encoding="utf-8")
    monitor = recipe["ServiceMonitor"]["spec"]
    assert recipe["Service"]["metadata"]["labels"][monitor["jobLabel"]] == job.group(1)


def test_scaled_object_query_follows_the_lag_and_ignores_it_while_a_sink_fails(tmp_path: Path) -> None:
    """Evaluated by Prometheus itself (``promtool test rules``): the query reads the largest lag over the
    replicas, and gives nothing (KEDA: 0, back to minReplicaCount) while a replica counts sink failures."""
    promtool = shutil.which("promtool")
    if promtool is None:
        service_unavailable("promtool is not installed (Debian package prometheus)")
    assert promtool is not None
    (trigger,) = scale_out()["ScaledObject"]["spec"]["triggers"]
    rules = tmp_path / "keda-query.yaml"
    rules.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "keda", "rules": [{"record": "keda_query", "expr": trigger["metadata"]["query"]}]}]}
        ),
        encoding="utf-8",
    )
    lag = 'mns_consumer_queue_oldest_message_age_seconds{job="mns-consumer",instance="%s",queue="q"}'
    failures = 'mns_consumer_failures_total{job="mns-consumer",instance="a",queue="q",stage="%s"}'
    scenario = {
        "interval": "1m",
        "input_series": [
            {"series": lag % "a", "values": "10+10x20"},
            {"series": lag % "b", "values": "5+0x20"},
            # Token failures do not hide the lag; sink failures (from minute 10 on) do.
            {"series": failures % "token", "values": "0+1x20"},
            {"series": failures % "sink", "values": "0x10 1+5x10"},
        ],
        "promql_expr_test": [
            {"expr": "keda_query", "eval_time": "5m", "exp_samples": [{"labels": "keda_query", "value": 60}]},
            {"expr": "keda_query", "eval_time": "15m", "exp_samples": []},
        ],
    }
    tests = tmp_path / "keda-query-test.yaml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [scenario]}), encoding="utf-8"
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
