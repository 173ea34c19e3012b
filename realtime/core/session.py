"""One connection's subscription state (PROTOCOL §3.4, §3.7, §11). Pure: no I/O.

The consumer asks the session before it does any I/O for a subscribe, and tells
it once the subscription is live, so the limits and id rules live here, in one
place that tests can drive with plain values.
"""

from __future__ import annotations

from enum import Enum

from realtime.core.paths import ChannelPath
from realtime.exceptions import DuplicateOperation, MaxSubscriptionsReached, UnknownOperation


class SubscribeDecision(Enum):
    NEW = "new"
    # The same id for the same channel again: Amplify re-sends a subscribe after
    # its 15 s ack timeout. Idempotent: ack again, keep one subscription (§11).
    REPEAT = "repeat"


class Session:
    """Subscriptions of one connection, by subscription id."""

    __slots__ = ("max_subscriptions", "subscriptions", "initialized")

    def __init__(self, *, max_subscriptions: int) -> None:
        self.max_subscriptions = max_subscriptions
        self.subscriptions: dict[str, ChannelPath] = {}
        self.initialized = False

    def check_subscribe(self, op_id: str, channel: ChannelPath) -> SubscribeDecision:
        """Decide what a subscribe means before any authorization or I/O.

        Raises:
            DuplicateOperation: the id is live for another channel.
            MaxSubscriptionsReached: the connection already holds the maximum.
        """
        current = self.subscriptions.get(op_id)
        if current is not None:
            if current == channel:
                return SubscribeDecision.REPEAT
            raise DuplicateOperation()
        if len(self.subscriptions) >= self.max_subscriptions:
            raise MaxSubscriptionsReached()
        return SubscribeDecision.NEW

    def add(self, op_id: str, channel: ChannelPath) -> None:
        self.subscriptions[op_id] = channel

    def remove(self, op_id: str) -> ChannelPath:
        """Forget a subscription.

        Raises:
            UnknownOperation: no live subscription has this id.
        """
        try:
            return self.subscriptions.pop(op_id)
        except KeyError:
            raise UnknownOperation(op_id) from None
