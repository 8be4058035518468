"""The arena cap is set from inside the process, unless the operator set MALLOC_ARENA_MAX."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CALL = "from mns_consumer.consume.malloc import limit_malloc_arenas; print(limit_malloc_arenas())"


def run(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", CALL], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is a glibc function")
def test_the_cap_is_set_on_glibc_and_left_to_an_operator_who_set_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert run(env) == "True"
    assert run({**env, "MALLOC_ARENA_MAX": "4"}) == "False"
