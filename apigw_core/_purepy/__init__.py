"""Pure-Python twins of the C core; ``apigw_core.native`` picks them or the extension."""
