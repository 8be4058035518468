"""The exception hierarchy of mns-consumer, and nothing else.

No exception's ``str()`` ever contains a secret: errors carry identifiers (queue names, AccessKey ids,
request ids), never AccessKey secrets, security tokens or signatures.
"""

from __future__ import annotations


class MnsConsumerError(Exception):
    """Base class of every error mns-consumer raises on purpose."""


class ConfigError(MnsConsumerError):
    """A configuration file or option is invalid.

    Attributes:
        source: The file (or option) the bad value came from.
        key_path: Dotted path of the offending key, e.g. ``queues[1].wait_seconds``.
        hint: What to write instead.
    """

    def __init__(self, source: str, key_path: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.key_path = key_path
        self.problem = problem
        self.hint = hint
        where = f"{source}: {key_path}: " if key_path else f"{source}: "
        super().__init__(where + problem + (f" ({hint})" if hint else ""))


class EmulatorError(MnsConsumerError):
    """The local emulator could not start or was driven with invalid arguments."""
