"""Where the installed trust repository lives (``opk-sign trust init``).

Apart from :mod:`opk_sign.trust.client`, which needs python-tuf, so that a verification can ask
whether a trust repository is installed without loading TUF when none is (issue 13).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: Environment variable naming the trust directory (tests, CI, several configurations).
TRUST_DIR_ENV: Final = "OPK_SIGN_TRUST_DIR"
#: The installed configuration in the trust directory; there when a repository is installed.
CONFIG_FILE: Final = "config.json"
#: The trusted root installed with it.
ROOT_FILE: Final = "root.json"


def default_trust_dir() -> Path:
    """``$OPK_SIGN_TRUST_DIR``, else ``<user cache dir>/opk-sign/trust``."""
    configured = os.environ.get(TRUST_DIR_ENV)
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("opk-sign")) / "trust"
