"""Signing many images in one run (``opk-sign sign --images-from FILE``, ``opk-sign library sign``).

One ephemeral key, one ID token and one PK token for the whole run (:func:`obtain_signer` once),
then each image signed as :func:`~opk_sign.sign.image.sign_image` signs one, a few at a time. Each
image succeeds or fails on its own: a failure is that image's result (what was signed and what was
not, with its exit code), never the end of the run. The same image named twice is signed once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from opk_sign.errors import EXIT_OK, OpkSignError
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
) -> BatchSigning:
    """Sign every image with one PK token; a failure to get the token (no ID token, bad issuer
    keys) raises, as nothing could be signed; every later failure is its image's result."""
    names = list(images)
    if not names:
        from opk_sign.errors import UsageError

        raise UsageError("no images to sign", hint="give IMAGE or --images-from FILE")
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
) -> Iterator[ImageSigning]:
    decided: dict[str, ImageSigning] = {}

    def one(image: str) -> ImageSigning:
        mark = time.perf_counter()
        try:
            reference = Reference.parse(image)
            result = sign_image(
                reference,
                provider=provider,
                client=client,
                options=options,
                now=now,
                signer=signer,
            )
        except OpkSignError as err:
            return ImageSigning(image, error=err, seconds=time.perf_counter() - mark)
        return ImageSigning(image, result=result, seconds=time.perf_counter() - mark)

    keys = [_key(name) for name in names]
    distinct = {key: name for key, name in reversed(list(zip(keys, names, strict=True)))}
    order = list(dict.fromkeys(keys))
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(order)))) as pool:
        for key, outcome in zip(order, pool.map(one, [distinct[k] for k in order]), strict=True):
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


def _key(image: str) -> str:
    try:
        return image_key(image)
    except OpkSignError:
        return image
