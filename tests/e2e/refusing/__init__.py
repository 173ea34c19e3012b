"""An app whose ``on_connect`` refuses every connection (``settings_refusing``)."""
