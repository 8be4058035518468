"""A probe for ``bench/daemon_ab.py --measures calls``: the thread CPU of each MNS receive and delete.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``; the A/B puts this folder there for the
daemon only, with ``MNS_CONSUMER_CALL_PROBE`` naming the JSON file written at exit. The first import of
``mns_consumer.consume.poller`` (which imports ``MnsQueue`` first) wraps ``MnsQueue.receive`` and
``MnsQueue.delete`` of whichever tree the daemon runs; each call's ``time.thread_time()`` is the CPU its
thread spent in it (request, signing, answer parsing), whatever the other threads did meanwhile.
"""

from __future__ import annotations

import atexit
import importlib.abc
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_OUT = os.environ.get("MNS_CONSUMER_CALL_PROBE")
_seconds: dict[str, list[tuple[float, int]]] = {"receive": [], "delete": []}


def _timed(name: str, call: Callable[..., Any], count: Callable[[Any, tuple[Any, ...]], int]) -> Callable[..., Any]:
    def timed(self: Any, *args: Any) -> Any:
        started = time.thread_time()
        result = call(self, *args)
        _seconds[name].append((time.thread_time() - started, count(result, args)))
        return result

    return timed


def _wrap_queue() -> None:
    from mns_consumer.alicom import queue

    client = queue.MnsQueue
    client.receive = _timed("receive", client.receive, lambda result, args: len(result))  # type: ignore[method-assign]
    client.delete = _timed("delete", client.delete, lambda result, args: len(args[0]))  # type: ignore[method-assign]


class _OnPollerImport(importlib.abc.MetaPathFinder):
    done = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "mns_consumer.consume.poller" and not _OnPollerImport.done:
            _OnPollerImport.done = True
            _wrap_queue()
        return None  # the normal finders import it


def _write() -> None:
    if not any(_seconds.values()):
        return  # a child process (the token fetcher) made no call: the daemon's file is kept
    with open(str(_OUT), "w") as out:
        json.dump(_seconds, out)


if _OUT:
    sys.meta_path.insert(0, _OnPollerImport())
    atexit.register(_write)
