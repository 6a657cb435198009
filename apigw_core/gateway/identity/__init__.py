"""Identity decisions, no I/O: signing keys (`keys`) and the OpenID provider key cache
(`jwks`) behind validate-jwt.  The runtime (runtime/jwks.py) does the fetching."""
