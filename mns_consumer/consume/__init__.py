"""Consuming MNS queues: pollers, the dispatcher that fans batches out to sinks, and the supervisor."""
