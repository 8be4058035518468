"""Alibaba's HTTP batch push mode: a receiver that spools each push durably before acknowledging it,
and workers that deliver the spool to the sinks with the same semantics as the MNS path."""
