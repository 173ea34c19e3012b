"""The pure protocol core: wire frames (``protocol``), channel paths and wildcards (``paths``),
one connection's subscription rules (``session``), the rate grammar and limiters (``rates``) and
SigV4 canonical requests (``sigv4``). Nothing here imports Django or Channels, does I/O or awaits:
values in, values or exceptions out, each module table-tested.
"""
