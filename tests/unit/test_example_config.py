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
from mns_consumer.observe.logging import LoggingConfig
from mns_consumer.observe.metrics import MetricsConfig
from mns_consumer.opt_out import OptOutConfig
from mns_consumer.sinks.base import BUILTIN_SINK_TYPES, sink_config_class
from mns_consumer.sinks.dead_letter import DeadLetterSinkConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def test_the_example_loads_with_every_sink_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example is valid as shipped and defines one sink of each built-in type."""
    for name in (
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "DATABASE_URL",
        "HOOK_SECRET",
        "PUSH_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
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
