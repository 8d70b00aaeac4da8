"""``opk-sign-containerd-verifier``: containerd 2.x's image-verifier contract.

containerd runs every executable in its verifier directory
(``[plugins."io.containerd.image-verifier.v1.bindir"] bin_dir``) on each transfer-service pull::

    <bin> -name <ref> -digest <top-level digest> \
        -stdin-media-type application/vnd.oci.descriptor.v1+json

with the image's descriptor as JSON on stdin. Exit 0 allows the pull; any other code refuses it,
and containerd puts the verifier's **stdout** (up to 32 KiB) in the pull's error and its stderr in
its debug log. The decision's one line goes to both. The exit code of a refusal is the one
``opk-sign verify`` gives the image (10 unsigned, 11 another signer, 14 no trust data ...).

containerd passes no other flags: the settings come from the file ``-config FILE`` names (the
executable ``opk-sign install containerd-verifier`` writes passes it), else from
``opk-sign-containerd-verifier.toml`` next to this program; ``$OPK_SIGN_TRUST_DIR`` overrides the
trust directory there. The settings decide what is allowed, so a file (or its directory) another
user could write is refused, and so is a ``-config FILE`` that does not exist: only the file next
to the program may be missing (defaults). No argparse (start-up is part of containerd's 10 s).
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from opk_sign import deadline
from opk_sign.admission.decision import Decision, one_line
from opk_sign.admission.settings import SETTINGS_FILE, Settings, parse_settings
from opk_sign.errors import EXIT_FAILURE, EXIT_USAGE, FormatError, OpkSignError, UsageError

DESCRIPTOR_MEDIA_TYPE: Final = "application/vnd.oci.descriptor.v1+json"
#: A descriptor is a few hundred bytes; annotations can add some. More is not a descriptor.
MAX_DESCRIPTOR_BYTES: Final = 64 * 1024
#: A descriptor nests two levels (annotations, platform); this leaves room and no more.
MAX_DESCRIPTOR_DEPTH: Final = 16
PROGRAM: Final = "opk-sign-containerd-verifier"

USAGE = (
    f"usage: {PROGRAM} [-config FILE] -name REF -digest DIGEST "
    f"-stdin-media-type {DESCRIPTOR_MEDIA_TYPE} < descriptor.json"
)


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    """containerd's flags (Go style: ``-name X`` or ``-name=X``, one or two dashes) and
    ``-config FILE``; UsageError for anything else."""
    known = {"name", "digest", "stdin-media-type", "config"}
    values: dict[str, str] = {}
    items = list(argv)
    while items:
        item = items.pop(0)
        if not item.startswith("-"):
            raise UsageError(f"unexpected argument {item!r}", hint=USAGE)
        flag, has_value, value = item.lstrip("-").partition("=")
        if flag not in known:
            raise UsageError(f"unknown flag {item!r}", hint=USAGE)
        if not has_value:
            if not items:
                raise UsageError(f"{item} needs a value", hint=USAGE)
            value = items.pop(0)
        if flag in values:
            raise UsageError(f"-{flag} given twice", hint=USAGE)
        values[flag] = value
    for flag in ("name", "digest"):
        if not values.get(flag):
            raise UsageError(f"-{flag} is required", hint=USAGE)
    media_type = values.get("stdin-media-type", DESCRIPTOR_MEDIA_TYPE)
    if media_type != DESCRIPTOR_MEDIA_TYPE:
        raise UsageError(f"-stdin-media-type {media_type!r}: only {DESCRIPTOR_MEDIA_TYPE} is read")
    return values


def read_descriptor(stream: object, digest: str) -> dict[str, object] | None:
    """The descriptor on stdin (bounded), checked against ``-digest``; None when stdin is empty
    or a terminal (run by hand)."""
    raw = getattr(stream, "buffer", stream)
    if getattr(raw, "isatty", lambda: False)():
        return None
    data = raw.read(MAX_DESCRIPTOR_BYTES + 1)  # type: ignore[attr-defined]
    if not data.strip():
        return None
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise UsageError(f"the descriptor on stdin is larger than {MAX_DESCRIPTOR_BYTES} bytes")
    from opk_sign.jose import parse_json  # size, depth and strictness bounded: no traceback

    try:
        descriptor = parse_json(
            data,
            "the descriptor on stdin",
            max_bytes=MAX_DESCRIPTOR_BYTES,
            depth=MAX_DESCRIPTOR_DEPTH,
        )
    except FormatError as err:
        detail = err.message.removeprefix("the descriptor on stdin: ")
        raise UsageError(
            f"the descriptor on stdin is not JSON within a descriptor's limits: {detail}"
        ) from None
    if not isinstance(descriptor, dict):
        raise UsageError("the descriptor on stdin is not a JSON object")
    if descriptor.get("digest") != digest:
        raise UsageError(
            f"the descriptor on stdin is of {descriptor.get('digest')!r}, not of -digest {digest}"
        )
    return descriptor


def settings_path(given: str | None, program: str) -> Path:
    if given:
        return Path(given)
    return Path(os.path.realpath(program)).parent / SETTINGS_FILE


def check_settings_path(path: Path) -> None:
    """Refuse (UsageError) settings another user could have written: the file, or its directory
    (where another could replace it), owned by someone other than this user or root, or
    writable by group or others (a sticky directory's other users cannot replace the file)."""
    trusted = {os.geteuid(), 0}
    for item, is_dir in ((path, False), (path.parent, True)):
        try:
            info = item.stat()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise UsageError(f"cannot check the settings {item}: {err.strerror or err}") from None
        mode = stat.S_IMODE(info.st_mode)
        writable = mode & (stat.S_IWGRP | stat.S_IWOTH)
        if (is_dir and mode & stat.S_ISVTX) or _read_only_mount(item):
            writable = 0  # sticky: others cannot replace it; read-only (a ConfigMap): no one
        if info.st_uid not in trusted or writable:
            what = "directory of the settings" if is_dir else "settings file"
            raise UsageError(
                f"the {what} {item} is owned by uid {info.st_uid} with mode {mode:03o}: another "
                "user could change what this verifier allows; refusing to use it",
                hint=f"chown {os.geteuid()} {item} && chmod go-w {item}",
            )


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def load_settings(path: Path, *, explicit: bool = False) -> Settings:
    """The settings in ``path``; defaults when it is missing, unless it was named explicitly
    (``-config FILE``): a named file that is not there is a refusal (fail closed)."""
    check_settings_path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(64 * 1024 + 1)
    except FileNotFoundError:
        if explicit:
            raise UsageError(
                f"the settings file {path} does not exist (it was named explicitly: no defaults)",
                hint="run `opk-sign install containerd-verifier` again, or name an existing file",
            ) from None
        return Settings(source=f"{path} (missing: defaults)")
    except OSError as err:
        raise UsageError(f"cannot read the settings {path}: {err.strerror}") from None
    return parse_settings(data, str(path))


def _say(line: str) -> None:
    """The decision's line: stdout is the reason in containerd's error, stderr its debug log."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.write(line + "\n")
            stream.flush()
        except OSError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        values = parse_args(args)
        path = settings_path(values.get("config"), sys.argv[0])
        settings = load_settings(path, explicit=bool(values.get("config")))
        read_descriptor(sys.stdin, values["digest"])
    except OpkSignError as err:
        _say(f"{PROGRAM}: refused: {one_line(err.diagnostics())}")
        return EXIT_USAGE
    except Exception as err:  # never a traceback into containerd's error: refuse, saying why
        _say(f"{PROGRAM}: refused: internal error {type(err).__name__}: {one_line(str(err), 300)}")
        return EXIT_FAILURE
    # Everything, trust refresh included, within the settings' timeout (below containerd's).
    budget = max(0.5, settings.timeout - (time.monotonic() - started))
    try:
        from opk_sign.admission.engine import Engine

        notices: list[str] = []
        engine = Engine(settings, notice=notices.append)
        try:
            with deadline.within(budget, f"deciding {values['name']}"):
                decision = engine.decide(values["name"], values["digest"])
        finally:
            engine.close()
        for notice in notices:
            print(one_line(notice, 500), file=sys.stderr)
        engine.audit(decision)
    except OpkSignError as err:  # the settings themselves (a bad path, an unsafe cache ...)
        decision = Decision(
            image=values["name"],
            allowed=False,
            outcome="usage-error" if isinstance(err, UsageError) else "trust-error",
            exit_code=err.exit_code,
            required="a working verifier",
            found=err.diagnostics(),
            digest=values["digest"],
        )
    except Exception as err:  # never a traceback into containerd's error: refuse, saying why
        _say(f"{PROGRAM}: refused: internal error {type(err).__name__}: {one_line(str(err), 300)}")
        return EXIT_FAILURE
    _say(decision.reason())
    if decision.allowed:
        return 0
    return decision.exit_code or EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
