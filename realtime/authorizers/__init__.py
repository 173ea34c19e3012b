"""The auth modes of DESIGN §6, one module each; see :mod:`realtime.auth` for the chain."""
