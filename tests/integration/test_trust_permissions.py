"""The trust directory is owner-only whatever the umask, and trust data another user could have
written (group/other-writable, or owned by someone else) is refused with exit 14 before use."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opk_sign.errors import EXIT_TRUST, TrustError
from opk_sign.trust.client import TRUST_DIR_ENV, TrustClient
from tests.services.tuf import Maintained, StaticServer, build_repository, cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Maintained:
    return build_repository(tmp_path_factory.mktemp("tuf"))


@pytest.fixture(scope="module")
def server(shared: Maintained) -> Iterator[StaticServer]:
    with StaticServer() as running:
        running.serve(shared.published)
        yield running


@pytest.fixture
def trust_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "trust"
    monkeypatch.setenv(TRUST_DIR_ENV, str(directory))
    return directory


@pytest.fixture
def no_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def init(shared: Maintained, server: StaticServer, tmp_path: Path, *extra: str) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(shared.root)
    assert cli("trust", "init", "--root", root, "--url", server.url, *extra) == 0


def modes(directory: Path) -> dict[str, int]:
    """Mode of everything under ``directory`` (itself as "."), symbolic links left out."""
    found = {".": stat.S_IMODE(directory.lstat().st_mode)}
    for path in directory.rglob("*"):
        if not path.is_symlink():
            found[str(path.relative_to(directory))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_owner_only(directory: Path) -> None:
    found = modes(directory)
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (directory / name).is_dir() else 0o600)
    }
    assert wrong == {}
    # The tree was really made: root, config, metadata, targets.
    assert {"config.json", "root.json"} <= set(found)
    assert any(name.endswith("metadata/timestamp.json") for name in found)
    assert any("targets/" in name and (directory / name).is_file() for name in found)


@pytest.mark.usefixtures("no_umask")
@pytest.mark.parametrize("refresh", [True, False])
def test_init_is_owner_only_under_umask_0(
    shared: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path, refresh: bool
) -> None:
    init(shared, server, tmp_path, *(() if refresh else ("--no-refresh",)))
    assert stat.S_IMODE(trust_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((trust_dir / "config.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((trust_dir / "root.json").stat().st_mode) == 0o600
    assert cli("trust", "status") == 0  # fills the cache when init did not
    assert_owner_only(trust_dir)
    assert cli("trust", "status", "--offline") == 0  # and accepts what it made


def cache_of(trust_dir: Path) -> Path:
    (cache,) = (trust_dir / "cache").iterdir()
    return cache


# What a user could loosen, found from the trust directory.
PATHS: dict[str, Callable[[Path], Path]] = {
    "trust dir": lambda d: d,
    "config": lambda d: d / "config.json",
    "root": lambda d: d / "root.json",
    "cache": lambda d: d / "cache",
    "repository cache": cache_of,
    "metadata dir": lambda d: cache_of(d) / "metadata",
    "timestamp": lambda d: cache_of(d) / "metadata" / "timestamp.json",
    "cached root": lambda d: next((cache_of(d) / "metadata" / "root_history").iterdir()),
    "targets dir": lambda d: cache_of(d) / "targets",
    "a target": lambda d: next(p for p in (cache_of(d) / "targets").rglob("*") if p.is_file()),
}


@pytest.mark.parametrize("bits", [stat.S_IWOTH, stat.S_IWGRP], ids=["o+w", "g+w"])
@pytest.mark.parametrize("which", sorted(PATHS))
@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_writable_by_others_is_refused(
    shared: Maintained,
    server: StaticServer,
    trust_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    which: str,
    bits: int,
    offline: bool,
) -> None:
    init(shared, server, tmp_path)
    path = PATHS[which](trust_dir)
    path.chmod(stat.S_IMODE(path.stat().st_mode) | bits)
    capsys.readouterr()
    assert cli("trust", "status", *(("--offline",) if offline else ())) == EXIT_TRUST
    err = capsys.readouterr().err
    assert f"{path} is writable by" in err
    assert f"chmod {'700' if path.is_dir() else '600'} {path}" in err
    path.chmod(0o700 if path.is_dir() else 0o600)  # the fix the message gives
    assert cli("trust", "status") == 0


@pytest.mark.parametrize("which", ["trust dir", "config", "timestamp"])
def test_the_library_client_refuses_too(
    shared: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path, which: str
) -> None:
    init(shared, server, tmp_path)
    path = PATHS[which](trust_dir)
    path.chmod(0o777 if path.is_dir() else 0o666)
    with pytest.raises(TrustError, match="writable by other users") as caught:
        TrustClient().mapping()  # verification asks the mapping first
    assert str(path) in caught.value.message
    assert caught.value.exit_code == EXIT_TRUST


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
@pytest.mark.parametrize("which", ["trust dir", "root", "timestamp"])
def test_owned_by_another_user_is_refused(
    shared: Maintained,
    server: StaticServer,
    trust_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    which: str,
) -> None:
    init(shared, server, tmp_path)
    path = PATHS[which](trust_dir)
    os.chown(path, 4242, -1)
    capsys.readouterr()
    assert cli("trust", "status") == EXIT_TRUST
    err = capsys.readouterr().err
    assert f"{path} is owned by uid 4242" in err
    assert "chown" in err


def test_init_refuses_a_world_writable_trust_dir(
    shared: Maintained,
    server: StaticServer,
    trust_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trust_dir.mkdir(mode=0o700)
    trust_dir.chmod(0o777)  # made by someone else's umask or on purpose
    root = tmp_path / "root.json"
    root.write_bytes(shared.root)
    for extra in ((), ("--no-refresh",)):
        assert cli("trust", "init", "--root", root, "--url", server.url, *extra) == EXIT_TRUST
        assert f"{trust_dir} is writable by other users" in capsys.readouterr().err
    assert not (trust_dir / "config.json").exists()
