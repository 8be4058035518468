"""config.example.yaml loads, and names every key the configuration models have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from mns_consumer.config import (
    BackfillConfig,
    Config,
    CredentialsConfig,
    EndpointsConfig,
    HttpConfig,
    PushConfig,
    PushRouteConfig,
    QueueConfig,
    TokensConfig,
    load_config,
)
from mns_consumer.errors import ConfigError
from mns_consumer.observe.logging import LoggingConfig
from mns_consumer.observe.metrics import MetricsConfig
from mns_consumer.opt_out import OptOutConfig
from mns_consumer.sinks.base import BUILTIN_SINK_TYPES, sink_config_class
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


EXAMPLE_SECRETS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tQ8Hd2Kx9Vb",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "kP3v9Qm2Xr7Ld4Ws8Tz1Hy6Nb0Cj5F",
    "HOOK_SECRET": "hk-7Rq2Vw9Lx4Mz8Pt3",
    "PUSH_SECRET": "ps-3Nd8Kq1Zr6Wv2Jm9",
}
"""What the example's ${...} references need: secrets have no default."""


def test_the_example_loads_with_every_sink_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example is valid as shipped, given its secrets, and defines one sink of each built-in type."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in EXAMPLE_SECRETS.items():
        monkeypatch.setenv(name, value)
    config = load_config(EXAMPLE)
    assert {sink.type for sink in config.sinks.values()} == set(BUILTIN_SINK_TYPES)
    assert config.dead_letter is not None
    assert config.push is not None


@pytest.mark.parametrize(
    "model",
    [
        Config,
        CredentialsConfig,
        EndpointsConfig,
        QueueConfig,
        TokensConfig,
        LoggingConfig,
        HttpConfig,
        MetricsConfig,
        OptOutConfig,
        BackfillConfig,
        PushConfig,
        PushRouteConfig,
        DeadLetterSinkConfig,
        *(sink_config_class(name) for name in sorted(BUILTIN_SINK_TYPES)),
    ],
)
def test_every_key_appears_in_the_example(model: type[BaseModel]) -> None:
    """Each key of each section is written out in the example, so users see every option."""
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [name for name in model.model_fields if not re.search(rf"^\s*(- )?{name}:", text, re.MULTILINE)]
    assert missing == []


@pytest.mark.parametrize("unset", sorted(EXAMPLE_SECRETS))
def test_the_example_has_no_default_for_any_secret(monkeypatch: pytest.MonkeyPatch, unset: str) -> None:
    """Without one of its variables the example does not load: no published value stands in for a secret."""
    for name, value in EXAMPLE_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(unset)
    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLE)
    assert f"environment variable {unset} is not set" in caught.value.problem
