"""Reading a policy file (YAML, or JSON, which YAML reads too) for `verify --policy` and for the
trust repository's `set-policy`; the document is then built by ``policy_from_document``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opk_sign.errors import UsageError


def load_policy_file(path: Path) -> Any:
    """The parsed document; an unreadable or unparsable file is a usage error naming it."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the policy file {path}: {err}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"policy file {path} is not valid YAML or JSON: {err}") from None
