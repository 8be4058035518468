"""The exit codes of every mns-consumer command, defined once."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
"""Everything asked for was done."""
EXIT_FAILURE: Final = 1
"""The command ran but its outcome is a failure (e.g. pushes that were not accepted)."""
EXIT_USAGE: Final = 2
"""Bad arguments or configuration: nothing was started (click's own usage errors use 2 as well)."""
EXIT_KILLED: Final = 3
"""A second SIGTERM/SIGINT arrived during the drain: the process left at once (nothing is lost: the
messages it had not deleted come back from MNS)."""
EXIT_UNAVAILABLE: Final = 4
"""A one-shot run (``backfill``) stopped early because Dysmsapi or a sink stayed unavailable through
every retry: nothing is lost and the run is idempotent, so run it again later."""
