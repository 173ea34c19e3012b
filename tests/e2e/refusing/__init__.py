"""An app whose ``on_connect`` refuses every connection (``settings_refusing``)."""

# The server's log line per refused attempt. Here, not in realtime_handlers: importing that module
# registers its on_connect in the importing process, and the test process must not refuse connections.
REFUSED_LINE = "e2e on_connect refused a connection"
