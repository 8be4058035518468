"""Everything that talks to Alibaba Cloud: the only package that imports Alibaba SDKs or knows wire formats.

* :mod:`~mns_consumer.alicom.endpoints` picks the Dybaseapi, Dysmsapi and MNS endpoints of a region.
* :mod:`~mns_consumer.alicom.credentials` finds the AccessKey: configuration, environment, default chain.
* :mod:`~mns_consumer.alicom.tokens` fetches QueryTokenForMnsQueue credentials and keeps one per queue fresh.
* :mod:`~mns_consumer.alicom.queue` wraps the MNS client: receive, delete, visibility, error mapping.

SDK exceptions never leave this package: they are translated into :mod:`mns_consumer.errors` types with
the SDK's exception kept as ``__cause__``.
"""
