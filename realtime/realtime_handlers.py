"""Handlers of ``realtime``'s own namespaces (autodiscovered like any app's).

``realtime-ops``: the live dashboard's channel, staff only (:mod:`realtime.ops.dashboard`).
"""

from realtime.ops import dashboard  # noqa: F401  (its handlers register on import)
