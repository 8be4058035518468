"""Run one fuzz target under atheris (libFuzzer): ``python -m tests.fuzz.run TARGET [libFuzzer options] [dirs]``.

``make fuzz`` runs every target for ``FUZZ_SECONDS`` each; see docs/development.md ("Fuzzing"). The checks
themselves live in :mod:`tests.fuzz.checks`, so that ``make test`` replays the corpus and the crashers
without atheris, which comes from its own dependency group (``fuzz``) and is not part of ``dev``.

The package code and PyYAML are instrumented for coverage; atheris then reports a crash for any exception
a check lets escape (an undocumented exception, or a broken invariant's AssertionError) and a timeout for
an input that runs longer than libFuzzer's ``-timeout``. A failure that :data:`KNOWN_BUGS` lists (a bug
being fixed on another branch) is noted once, its input saved under ``FUZZ_KNOWN_DIR``, and the run goes
on; ``FUZZ_STRICT=1`` stops on those too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import atheris
import structlog

TARGETS = ("mns_body", "push_body", "push_http", "config", "replay")


def main() -> None:
    """Pick the target named by the first argument and hand the rest of the arguments to libFuzzer."""
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer options] [corpus dirs]")
    target = sys.argv.pop(1)
    # The receiver logs every refusal; at fuzzing rates that is all the output would hold.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    with atheris.instrument_imports(include=["mns_consumer", "yaml", "tests.fuzz"]):
        from tests.fuzz.checks import CHECKS, known_bug, remove_stale_scratch
    remove_stale_scratch()
    atheris.Setup(sys.argv, _tolerating_known(target, CHECKS[target], known_bug))
    atheris.Fuzz()


def _tolerating_known(
    target: str, check: Callable[[bytes], None], known_bug: Callable[[str, BaseException], tuple[str, str] | None]
) -> Callable[[bytes], None]:
    if os.environ.get("FUZZ_STRICT") == "1":
        return check
    folder = Path(os.environ.get("FUZZ_KNOWN_DIR", "build/fuzz/known")) / target
    smallest: dict[str, int] = {}

    def run(data: bytes) -> None:
        try:
            check(data)
        except Exception as error:
            known = known_bug(target, error)
            if known is None:
                raise
            branch, signature = known
            if signature not in smallest:
                print(f"known bug (fixed on {branch}), going on: {signature}", file=sys.stderr, flush=True)
            if len(data) < smallest.get(signature, sys.maxsize):
                # The smallest input seen for each signature is kept for the report.
                smallest[signature] = len(data)
                folder.mkdir(parents=True, exist_ok=True)
                name = hashlib.sha1(signature.encode()).hexdigest()[:12]  # noqa: S324  (a file name)
                (folder / f"{branch.replace('/', '-')}-{name}").write_bytes(data)

    return run


if __name__ == "__main__":
    main()
