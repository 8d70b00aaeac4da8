"""Signing many images in one run (``opk-sign sign --images-from FILE``, ``opk-sign library sign``).

One ephemeral key, one ID token and one PK token for the whole run (:func:`obtain_signer` once),
then each image signed as :func:`~opk_sign.sign.image.sign_image` signs one, a few at a time. Each
image succeeds or fails on its own: a failure is that image's result (what was signed and what was
not, with its exit code), never the end of the run. The same image named twice is signed once.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from opk_sign.errors import EXIT_OK, OpkSignError, RegistryError
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.reference import Reference, image_key
from opk_sign.oidc import JWKSCache, TokenProvider
from opk_sign.sign.image import SigningOptions, SigningResult, obtain_signer, sign_image
from opk_sign.sign.signer import Signer

#: Images signed at once (each signs up to MAX_PARALLEL_MANIFESTS manifests at once itself).
DEFAULT_IMAGE_JOBS: Final = 16
#: Images one run may sign: a library file's tags are a few thousand at most.
MAX_IMAGES: Final = 20_000


@dataclass(frozen=True)
class ImageSigning:
    """What became of one image of a batch: its result, or the error that stopped it."""

    image: str
    result: SigningResult | None = None
    error: OpkSignError | None = None
    seconds: float = field(default=0.0, compare=False)

    @property
    def signed(self) -> bool:
        return self.result is not None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.error is None else self.error.exit_code


@dataclass(frozen=True)
class BatchSigning:
    """The run: the one signer's identity and every image's outcome, in the order given."""

    images: tuple[ImageSigning, ...]
    #: Seconds to get the one PK token (ID token request, checks, GQ256).
    pktoken_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """The first failed image's code (ADR 0002: signing exits with its first cause's)."""
        return next((i.exit_code for i in self.images if i.error is not None), EXIT_OK)

    def summary(self) -> str:
        signed = [i.image for i in self.images if i.signed]
        failed = [i for i in self.images if not i.signed]
        lines = [f"{len(signed)} of {len(self.images)} images signed"]
        if failed:
            lines.append("  not signed: " + ", ".join(i.image for i in failed))
            lines.append("  signed: " + (", ".join(signed) if signed else "none"))
        return "\n".join(lines)


def sign_images(
    images: Iterable[str],
    *,
    provider: TokenProvider,
    client: RegistryClient,
    options: SigningOptions | None = None,
    jwks: JWKSCache | None = None,
    now: float | None = None,
    jobs: int = DEFAULT_IMAGE_JOBS,
    on_done: Callable[[ImageSigning], None] | None = None,
    processes: int = 1,
    client_factory: Callable[[], RegistryClient] | None = None,
) -> BatchSigning:
    """Sign every image with one PK token; a failure to get the token (no ID token, bad issuer
    keys) raises, as nothing could be signed; every later failure is its image's result.

    ``processes`` > 1 with a ``client_factory``: a batch of :data:`MIN_IMAGES_PER_PROCESS` images
    per process or more is shared with forked copies of this process (:func:`_forked`), each with
    its own registry client; only where forking is safe (POSIX, no other thread running)."""
    names = list(images)
    if not names:
        from opk_sign.errors import UsageError

        raise UsageError("no images to sign")
    if len(names) > MAX_IMAGES:
        from opk_sign.errors import UsageError

        raise UsageError(f"more than {MAX_IMAGES} images in one run")
    started = time.perf_counter()
    signer = obtain_signer(provider, jwks=jwks, now=now)
    pktoken_seconds = time.perf_counter() - started
    done = list(
        _sign_each(
            names,
            signer,
            provider=provider,
            client=client,
            options=options,
            now=now,
            jobs=jobs,
            on_done=on_done,
            processes=processes,
            client_factory=client_factory,
        )
    )
    return BatchSigning(tuple(done), pktoken_seconds)


def _sign_each(
    names: list[str],
    signer: Signer,
    *,
    provider: TokenProvider,
    client: RegistryClient,
    options: SigningOptions | None,
    now: float | None,
    jobs: int,
    on_done: Callable[[ImageSigning], None] | None,
    processes: int,
    client_factory: Callable[[], RegistryClient] | None,
) -> Iterator[ImageSigning]:
    decided: dict[str, ImageSigning] = {}

    def signing(with_client: RegistryClient) -> Callable[[str], ImageSigning]:
        def one(image: str) -> ImageSigning:
            mark = time.perf_counter()
            try:
                reference = Reference.parse(image)
                result = sign_image(
                    reference,
                    provider=provider,
                    client=with_client,
                    options=options,
                    now=now,
                    signer=signer,
                )
            except OpkSignError as err:
                return ImageSigning(image, error=err, seconds=time.perf_counter() - mark)
            return ImageSigning(image, result=result, seconds=time.perf_counter() - mark)

        return one

    keys = [_key(name) for name in names]
    distinct = {key: name for key, name in reversed(list(zip(keys, names, strict=True)))}
    order = list(dict.fromkeys(keys))
    shares = _shares(order, processes if client_factory is not None else 1)
    workers: list[_Forked] = []
    if len(shares) > 1:
        assert client_factory is not None
        workers = [
            _forked([distinct[k] for k in share], client_factory, signing, jobs)
            for share in shares[1:]
        ]
    mine = shares[0]
    one = signing(client)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(mine)))) as pool:
        for key, outcome in zip(mine, pool.map(one, [distinct[k] for k in mine]), strict=True):
            decided[key] = outcome
    for worker, share in zip(workers, shares[1:], strict=True):
        for key, outcome in zip(share, worker.results(), strict=True):
            decided[key] = outcome
    for name, key in zip(names, keys, strict=True):
        outcome = decided[key]
        item = (
            outcome
            if outcome.image == name
            else ImageSigning(name, outcome.result, outcome.error, outcome.seconds)
        )
        if on_done is not None:
            on_done(item)
        yield item


#: Images a forked process must have to be worth starting.
MIN_IMAGES_PER_PROCESS: Final = 16


def _shares(order: list[str], processes: int) -> list[list[str]]:
    """The images of each process (this one first), round robin; one share where forking is not
    worth it or not safe: another thread may hold a lock the child would inherit held."""
    count = min(processes, len(order) // MIN_IMAGES_PER_PROCESS)
    if count <= 1 or not hasattr(os, "fork") or threading.active_count() > 1:
        return [order]
    return [order[i::count] for i in range(count)]


@dataclass
class _Forked:
    """A forked copy of this process signing its share; its results come back pickled."""

    pid: int
    read_fd: int
    images: list[str]

    def results(self) -> list[ImageSigning]:
        chunks = []
        with os.fdopen(self.read_fd, "rb") as pipe:
            while chunk := pipe.read(1 << 16):
                chunks.append(chunk)
        _, status = os.waitpid(self.pid, 0)
        try:
            done = pickle.loads(b"".join(chunks))  # noqa: S301 - our own child, our own pipe
            if isinstance(done, list) and len(done) == len(self.images):
                return done
        except Exception:  # noqa: S110 - a child that died mid-write: reported below
            pass
        return [
            ImageSigning(
                image,
                error=RegistryError(
                    f"{image}: the signing process for it ended (status {status}) before "
                    "reporting; whether it was signed is unknown",
                    hint="run the command again: re-signing a manifest only adds a referrer",
                ),
            )
            for image in self.images
        ]


def _forked(
    images: list[str],
    client_factory: Callable[[], RegistryClient],
    signing: Callable[[RegistryClient], Callable[[str], ImageSigning]],
    jobs: int,
) -> _Forked:
    """Fork a copy of this process (the run's key and PK token stay in memory, never serialized)
    that signs ``images`` with a registry client of its own and writes the results to a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return _Forked(pid, read_fd, images)
    os.close(read_fd)  # the child: never returns
    code = 0
    try:
        with client_factory() as own:
            one = signing(own)
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(images)))) as pool:
                done = list(pool.map(one, images))
        data = pickle.dumps(done)
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _key(image: str) -> str:
    try:
        return image_key(image)
    except OpkSignError:
        return image
