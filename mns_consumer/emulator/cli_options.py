"""The ``mns-consumer emulator`` options that make it answer as the service does today.

Kept beside the emulator so the command in :mod:`mns_consumer.cli` only adds one decorator and passes
the values on: :func:`service_options` declares them, :func:`service_settings` turns them into
:class:`~mns_consumer.emulator.settings.EmulatorSettings` fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from mns_consumer.emulator.flow_limiter import FlowLimits
from mns_consumer.emulator.wan import WAN_SERVICES, WanProfile

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULTS = FlowLimits()
# Option name -> (FlowLimits field, factor from the option's unit to the field's).
_FLOW_OPTIONS: dict[str, tuple[str, float]] = {
    "flow_hold_ms": ("hold_seconds", 0.001),
    "account_tps": ("account_tps", 1.0),
    "max_received_not_deleted": ("max_received_not_deleted", 1.0),
    "max_received_not_deleted_tps": ("max_received_not_deleted_tps", 1.0),
    "max_received_not_deleted_minutes": ("max_received_not_deleted_seconds", 60.0),
    "flow_window_seconds": ("window_seconds", 1.0),
    "throttle_probability": ("throttle_probability", 1.0),
}


def service_options(command: F) -> F:
    """Add the flow-limiter, short-batch and WAN options to a click command."""
    options = [
        click.option(
            "--flow-limit",
            is_flag=True,
            help="Switch on the flow limiter (HTTP 429 TooManyRequests) with the documented limits; "
            "any of the limit options below switches it on too.",
        ),
        click.option(
            "--flow-hold-ms",
            type=float,
            help=f"How long a refused call is held before its 429, ms [{_DEFAULTS.hold_seconds * 1000:g}].",
        ),
        click.option(
            "--account-tps",
            type=float,
            help=f"Account budget, calls a second; batch operations count per message [{_DEFAULTS.account_tps:g}].",
        ),
        click.option(
            "--max-received-not-deleted",
            type=int,
            help=f"Per queue: received-not-deleted messages that throttle receives "
            f"[{_DEFAULTS.max_received_not_deleted}].",
        ),
        click.option(
            "--max-received-not-deleted-tps",
            type=float,
            help=f"Per queue: received minus deleted a second above which receives are throttled "
            f"[{_DEFAULTS.max_received_not_deleted_tps:g}].",
        ),
        click.option(
            "--max-received-not-deleted-minutes",
            type=float,
            help=f"Per queue: how long a message may stay received and not deleted, min "
            f"[{_DEFAULTS.max_received_not_deleted_seconds / 60:g}].",
        ),
        click.option(
            "--flow-window-seconds",
            type=float,
            help=f"Window the rates are counted in, s of emulator time [{_DEFAULTS.window_seconds:g}].",
        ),
        click.option(
            "--throttle-probability",
            type=click.FloatRange(0, 1),
            help="Share of MNS calls answered 429 whatever the load (the service scaling out) [0].",
        ),
        click.option(
            "--short-batch-probability",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Share of BatchReceiveMessage answers cut to fewer messages than are visible, even none.",
        ),
        click.option(
            "--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True, help="WAN round trip, ms."
        ),
        click.option(
            "--jitter-ms",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Each round trip is --latency-ms plus or minus up to this, ms.",
        ),
        click.option(
            "--latency-services",
            type=click.Choice(WAN_SERVICES),
            default="mns",
            show_default=True,
            help="Services the WAN latency applies to: MNS only, or Dybaseapi and Dysmsapi as well.",
        ),
        click.option(
            "--handshake/--no-handshake",
            default=True,
            show_default=True,
            help="A new connection's first call also pays its TCP (and TLS) handshake round trips.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def service_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The EmulatorSettings fields that the options of :func:`service_options` ask for.

    Raises:
        click.BadParameter: For a limit out of range.
    """
    given = {name: values[name] for name in _FLOW_OPTIONS if values.get(name) is not None}
    flow_limits: FlowLimits | None = None
    if values.get("flow_limit") or given:
        try:
            flow_limits = FlowLimits(
                **{_FLOW_OPTIONS[name][0]: v * _FLOW_OPTIONS[name][1] for name, v in given.items()}
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    wan: WanProfile | None = None
    if values.get("latency_ms") or values.get("jitter_ms"):
        wan = WanProfile(
            latency_seconds=values["latency_ms"] / 1000,
            jitter_seconds=values["jitter_ms"] / 1000,
            services=values["latency_services"],
            handshake=values["handshake"],
        )
    return {
        "flow_limits": flow_limits,
        "short_batch_probability": values.get("short_batch_probability") or 0.0,
        "wan": wan,
    }
