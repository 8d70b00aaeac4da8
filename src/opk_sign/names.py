"""Names a user sees in messages of several modules, and the command line shows in its help:
environment variables and flags. Apart, importing nothing, so that ``--help`` needs no more
(issue 13, start-up)."""

from __future__ import annotations

#: Registries to reach over plain HTTP, comma- or whitespace-separated ``HOST[:PORT]``s.
ENV_INSECURE_REGISTRIES = "OPK_SIGN_INSECURE_REGISTRIES"
#: The command-line flag naming one (the CLI's; the library takes a value).
INSECURE_REGISTRY_FLAG = "--insecure-registry"
#: Environment variables: the default mode of ``sign --tlog`` and the log (CLI and action).
TLOG_MODE_VAR = "OPK_SIGN_TLOG"
TLOG_URL_VAR = "OPK_SIGN_TLOG_URL"
#: What ``--tlog`` (and the action's ``tlog`` input) may be: ``auto`` logs a public repository's.
TLOG_MODES = ("auto", "always", "never")
#: The deadline of one HTTP exchange, in seconds, unless ``--timeout`` says otherwise
#: (``opk_sign.http.HTTPConfig.exchange_timeout``'s default; the help names it).
DEFAULT_EXCHANGE_TIMEOUT = 60.0
