"""Serving a site on many processes: the supervisor and the server process it runs."""
