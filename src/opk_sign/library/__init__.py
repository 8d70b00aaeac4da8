"""Docker Official Images' bashbrew library files (pure: :mod:`opk_sign.library.bashbrew`)."""
