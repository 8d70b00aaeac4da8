import sys

from opk_sign.cli.main import main

sys.exit(main())
