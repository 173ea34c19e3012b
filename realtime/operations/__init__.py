"""What every transport shares: the publish path (``publishing``), the subscribe path
(``subscribing``), each a fixed ladder of checks from the channel grammar to fan-out, and the
transactional outbox (``relay``): events written in the caller's transaction by
``realtime.publish_on_commit`` and published by the relay after the commit.
"""
