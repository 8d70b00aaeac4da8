"""Fixtures shared by every test directory."""

import os
import tempfile

pytest_plugins = ["tests.services.tsa"]

# No test may read or write the user's installed trust repository (`opk-sign trust init`):
# each test run, and every subprocess it starts, gets an empty trust directory of its own.
os.environ["OPK_SIGN_TRUST_DIR"] = tempfile.mkdtemp(prefix="opk-sign-trust-")
# No test may write to Sigstore's public transparency log: `opk-sign sign` (and the sign action)
# logs a public repository's signatures by default; tests that log say --tlog and --tlog-url.
os.environ["OPK_SIGN_TLOG"] = "never"
