#!/usr/bin/env python3
"""Entry point of the opk-sign container actions. Thin on purpose: the signing action
(action.yml, no arguments) runs ``opk_sign.actions.sign``; the verify action (verify/action.yml,
``args: [verify]``) runs ``opk_sign.actions.verify``. Both do everything else themselves
(inputs, outputs, step summary, annotations)."""

import sys

if __name__ == "__main__":
    if sys.argv[1:] == ["verify"]:
        from opk_sign.actions.verify import main
    else:
        from opk_sign.actions.sign import main
    sys.exit(main())
