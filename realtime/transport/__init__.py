"""The edges where clients come in: one WebSocket connection (``connection.Connection``) and the
ASGI consumer that feeds it, the WebSocket handshake's credentials (``handshake``), the HTTP
publish endpoint ``POST /event`` (``http``, made with ``endpoints``, bodies read by ``parsers``,
described in OpenAPI by ``openapi`` and ``schema``), and the console page (``console``). They
parse, call the operations, and turn errors into the wire's shape in one place per transport.
"""
