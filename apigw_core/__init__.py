"""apigw_core: the data plane of an API gateway.

Sans-IO protocol cores (HTTP/1.1, HTTP/2, WebSocket, gRPC) feed one neutral stream-event
vocabulary into a policy pipeline modelled on Azure API Management, and a trio runtime owns
the sockets.  The hot paths (the HTTP/1.1 head parser, the shared token buckets of
``apigw_core.buckets``) are C bound via cffi, with pure-Python twins used when the
extension is not built (see ``apigw_core.native``).

Importing this package is cheap: it imports neither trio nor the C extension.
"""

__version__ = "0.1.0"
