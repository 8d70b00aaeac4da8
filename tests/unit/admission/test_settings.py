"""The verifier's settings file is read strictly (issue 15): a typo never relaxes a node."""

from __future__ import annotations

from pathlib import Path

import pytest

from opk_sign.admission.settings import Settings, parse_settings
from opk_sign.errors import UsageError


def test_defaults_and_round_trip() -> None:
    settings = Settings(
        trust_dir=Path("/var/lib/trust"),
        unmapped="deny",
        cache_dir=Path("/var/cache/x"),
        insecure_registries=("10.0.0.5:5000",),
        issuer="https://issuer.example",
    )
    again = parse_settings(settings.to_toml().encode(), "settings.toml")
    assert again == settings
    assert Settings().unmapped == "allow"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('unmaped = "deny"\n', "unknown key 'unmaped'"),
        ('unmapped = "maybe"\n', 'expected "allow" or "deny"'),
        ('unmapped = "Deny"\n', 'expected "allow" or "deny"'),
        ('trust-dir = "relative/dir"\n', "must be an absolute path"),
        ("trust-dir = 5\n", "trust-dir must be a path"),
        ('timeout = "8"\n', "timeout must be a number"),
        ("timeout = true\n", "timeout must be a number"),
        ("timeout = 10\n", "not below containerd's 10 s"),
        ("timeout = 0\n", "must be a positive number"),
        ("trust-timeout = 9\n", "trust-timeout must be below timeout"),
        ("cache-entries = 0\n", "cache-entries must be 1 to"),
        ("cache-entries = 1.5\n", "must be a whole number"),
        ('insecure-registries = "a"\n', "must be a list"),
        ("= broken\n", "not valid TOML"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_settings(text.encode(), "settings.toml")
    assert message in caught.value.message
    assert "settings.toml" in caught.value.message or "TOML" in caught.value.message


def test_size_and_encoding_are_bounded() -> None:
    with pytest.raises(UsageError, match="larger than"):
        parse_settings(b"#" * (64 * 1024 + 1), "s.toml")
    with pytest.raises(UsageError, match="not UTF-8"):
        parse_settings(b'unmapped = "\xff"\n', "s.toml")
