"""`python -m apigw_core ...`: the same as the `apigw` command."""

import sys

from apigw_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
