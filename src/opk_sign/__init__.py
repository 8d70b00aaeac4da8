"""opk-sign: keyless signing of container images with OpenPubkey."""

__version__ = "0.1.0"
