"""The daemon's token fetcher: the Tea client in a short-lived child process, against the emulator.

The answers of QueryTokenForMnsQueue (tokens and every error code) are checked for both fetchers in
``test_tokens_emulator.py``; this file checks what only the child process adds: sharing one child
between concurrent fetches, and every way the child itself can fail.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import pytest

from mns_consumer.alicom.credentials import AccessKey
from mns_consumer.alicom.token_process import CHILD_FAILED, ChildProcessTokenFetcher
from mns_consumer.alicom.tokens import QueueToken
from mns_consumer.emulator import Emulator
from mns_consumer.errors import TokenError
from tests.integration.test_tokens_emulator import QUEUE, endpoints_of


def child_fetcher(emulator: Emulator, **options: object) -> ChildProcessTokenFetcher:
    settings = emulator.settings
    key = AccessKey(settings.access_key_id, settings.access_key_secret)
    return ChildProcessTokenFetcher(key, endpoints_of(emulator), **options)  # type: ignore[arg-type]


def python_child(code: str) -> list[str]:
    """A child command line running ``code`` instead of the real child module."""
    return [sys.executable, "-c", code]


def fetch_error(fetcher: ChildProcessTokenFetcher) -> TokenError:
    with pytest.raises(TokenError) as caught:
        fetcher.fetch("SmsReport", QUEUE)
    return caught.value


def test_concurrent_fetches_share_children_and_each_gets_a_working_token(emulator: Emulator) -> None:
    """Eight queues refreshing at once start at most two children, and every token is a fresh STS one."""
    fetcher = child_fetcher(emulator)
    start = threading.Barrier(8)
    tokens: list[QueueToken] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        start.wait()
        try:
            tokens.append(fetcher.fetch("SmsReport", QUEUE))
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(tokens) == 8
    assert all(token.access_key_id.startswith("STS.") for token in tokens)
    assert len({token.security_token for token in tokens}) == 8, "each fetch is its own API call"
    assert 1 <= fetcher.children_started <= 2


def test_the_token_survives_the_trip_with_its_times_in_utc(make_emulator: Callable[..., Emulator]) -> None:
    """ExpireTime and CreateTime cross the pipe as the same UTC instants."""
    emulator = make_emulator(token_ttl_seconds=900)
    token = child_fetcher(emulator).fetch("SmsReport", QUEUE)
    assert token.created_at is not None
    assert token.expires_at.utcoffset() is not None
    assert (token.expires_at - token.created_at).total_seconds() == 900


def test_a_child_that_crashes_is_token_child_failed_with_its_status_and_last_words(emulator: Emulator) -> None:
    """A non-zero exit is reported with the exit status and the child's last stderr line."""
    last_words = "sys.stderr.write('first\\nModuleNotFoundError: x\\n')"
    command = python_child(f"import sys; print('noise'); {last_words}; sys.exit(3)")
    error = fetch_error(child_fetcher(emulator, command=command))
    assert error.code == CHILD_FAILED
    assert "status 3" in str(error)
    assert "ModuleNotFoundError: x" in str(error)


def test_a_child_that_answers_nonsense_is_token_child_failed(emulator: Emulator) -> None:
    """Exit 0 with something other than one result per fetch is a failure, not a token."""
    for answer in ("not json", '{"results": []}', '{"results": [{"token": {"access_key_id": "x"}}]}'):
        command = python_child(f"import sys; sys.stdin.read(); sys.stdout.write({answer!r})")
        error = fetch_error(child_fetcher(emulator, command=command))
        assert error.code == CHILD_FAILED, answer
        assert "not a token list" in str(error)


def test_a_child_that_cannot_start_is_token_child_failed_naming_the_command(emulator: Emulator, tmp_path) -> None:
    """A missing interpreter is reported as such, at fetch time, without crashing the caller."""
    missing = str(tmp_path / "no-such-python")
    error = fetch_error(child_fetcher(emulator, command=[missing, "-m", "x"]))
    assert error.code == CHILD_FAILED
    assert missing in str(error)


def test_a_child_that_hangs_is_killed_at_its_deadline_as_a_network_error(emulator: Emulator) -> None:
    """Start allowance plus the call's timeouts bound the child; past that it is killed."""
    command = python_child("import time; time.sleep(60)")
    fetcher = child_fetcher(
        emulator, command=command, start_timeout_seconds=0.5, connect_timeout_seconds=0.2, read_timeout_seconds=0.3
    )
    started = time.monotonic()
    error = fetch_error(fetcher)
    assert error.code == "NetworkError"
    assert "child process killed" in str(error)
    assert time.monotonic() - started < 30, "the hang guard, far above the 1 s deadline"


def test_the_secret_goes_over_stdin_never_the_command_line(emulator: Emulator, tmp_path) -> None:
    """The child's arguments (visible to every user in ps) hold no secret; stdin carries the request."""
    seen = tmp_path / "seen"
    code = f"import sys, pathlib; pathlib.Path({str(seen)!r}).write_text(sys.stdin.read() + '\\n' + ' '.join(sys.argv))"
    fetch_error(child_fetcher(emulator, command=python_child(code)))
    request, argv = seen.read_text().rsplit("\n", 1)
    assert emulator.settings.access_key_secret in request
    assert emulator.settings.access_key_secret not in argv
