"""Getting events to sockets: this process's subscription index (``hub``), the channel-layer
bridge that carries events between processes (``bridge``), and each connection's bounded
outbound queue (``outbox``). Per subscriber, delivery is one append of a pre-built frame.
"""
