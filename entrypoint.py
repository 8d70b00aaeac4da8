#!/usr/bin/env python3
"""Entry point of the opk-sign container action (action.yml). Thin on purpose: everything it
does is in ``opk_sign.action`` (inputs, credentials, outputs, step summary, annotations)."""

import sys

from opk_sign.action import main

if __name__ == "__main__":
    sys.exit(main())
