"""Who is here: live connections, occupancy and presence per channel, and server-side control.

``connections`` indexes this process's open connections (by id, API key and
user) for the control messages that close them (``control``); ``occupancy``
counts subscriptions per channel key across processes, ``members`` lists who
holds them where a namespace opted in, and ``stream`` delivers both on the
reserved presence channels (PROTOCOL §12).
"""
