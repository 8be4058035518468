"""The fuzz targets' invariants, replayed without atheris: every corpus file, every crasher, and Hypothesis.

``make fuzz`` (atheris) looks for new failing inputs; each one found is minimized and kept under
tests/fuzz/crashers/<target>/, and the corpus it grows from lives under tests/fuzz/corpus/<target>/. This
module runs the same checks (:mod:`tests.fuzz.checks`) on all of them, so a bug found once stays fixed.
Crashers of bugs still being fixed on another branch are expected failures, strictly: once the fix is
merged the test passes, the strict mark fails, and the mark is dropped (with the KNOWN_BUGS entry).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import checks
from tests.fuzz.checks import CHECKS, known_bug

FUZZ = Path(__file__).parents[1] / "fuzz"
FOLDERS = ("corpus", "crashers")

EXPECTED_FAILURES: dict[str, str] = {
    # crashers/<target>/<file> -> the branch that fixes it (none open: every crasher found so far is fixed).
}


def _inputs() -> Iterator[tuple[str, Path]]:
    for folder in FOLDERS:
        for target_folder in sorted((FUZZ / folder).iterdir()):
            for path in sorted(target_folder.iterdir()):
                yield f"{folder}/{target_folder.name}/{path.name}", path


def _cases() -> Iterator[object]:
    for name, path in _inputs():
        branch = EXPECTED_FAILURES.get(name)
        marks = [pytest.mark.xfail(strict=True, reason=f"fixed on branch {branch}")] if branch else []
        yield pytest.param(path.parent.name, path, id=name, marks=marks)


@pytest.fixture(scope="module", autouse=True)
def _receiver_stopped() -> Iterator[None]:
    yield
    checks.close_receiver()


@pytest.mark.parametrize(("target", "path"), list(_cases()))
def test_fuzz_input_keeps_its_target_invariant(target: str, path: Path) -> None:
    """A corpus file or crasher passes its target's check (only documented errors, nothing lost)."""
    CHECKS[target](path.read_bytes())


def test_every_fuzz_target_has_a_corpus_and_every_expected_failure_names_a_crasher() -> None:
    """No target runs without seeds, and no expected-failure mark outlives its file."""
    names = {name for name, _ in _inputs()}
    assert set(EXPECTED_FAILURES) <= names
    for target in CHECKS:
        assert any((FUZZ / "corpus" / target).iterdir()), target


def _seeds(target: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((FUZZ / "corpus" / target).iterdir()) if path.stat().st_size < 4096]


def _mutated(target: str) -> st.SearchStrategy[bytes]:
    """A seed of the target with a few bytes spliced in, cut out or overwritten, as libFuzzer mutates."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(_seeds(target))))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            insert = draw(st.binary(max_size=8) | st.sampled_from([b"\\u0000", b"\xef\xbc\x91", b"1e999", b"\xff"]))
            cut = draw(st.integers(0, 4))
            data[at : at + cut] = insert
        return bytes(data)

    return mutate()


def _check_tolerating_known(target: str, data: bytes) -> None:
    """The check, except that a bug another branch is fixing (checks.KNOWN_BUGS) is left to its crasher."""
    try:
        CHECKS[target](data)
    except Exception as error:
        if known_bug(target, error) is None:
            raise


MUTATIONS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("target", ["mns_body", "push_body", "replay"])
@MUTATIONS
@given(data=st.data())
def test_mutated_seeds_keep_the_decoder_invariants(target: str, data: st.DataObject) -> None:
    """Mutated corpus files of the decoders and the replay reader pass their checks too."""
    _check_tolerating_known(target, data.draw(_mutated(target)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutated("push_http"))
def test_mutated_requests_keep_the_push_receiver_invariants(data: bytes) -> None:
    """Mutated push requests, sent to the real receiver on loopback, pass its check too."""
    _check_tolerating_known("push_http", data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutated("config"))
def test_mutated_configurations_keep_the_loader_invariants(data: bytes) -> None:
    """Mutated configuration files load or fail with a ConfigError."""
    _check_tolerating_known("config", data)
