"""OCI descriptors and platforms, with the unknown fields of a descriptor kept for round trips."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opk_sign.errors import FormatError

_KNOWN = frozenset(
    {"mediaType", "digest", "size", "annotations", "artifactType", "platform", "urls"}
)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]``, as docker and the OCI spec write it (``linux/arm64/v8``)."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise FormatError(f"invalid platform {text!r}: expected os/architecture[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Platform:
        os_, arch = data.get("os"), data.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise FormatError("platform needs string fields os and architecture")
        variant, os_version = data.get("variant"), data.get("os.version")
        return cls(
            os_,
            arch,
            variant if isinstance(variant, str) else None,
            os_version if isinstance(os_version, str) else None,
        )

    def to_dict(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """What points at content: media type, digest and size, plus the optional OCI fields.

    ``extra`` holds fields this version does not know, so that a descriptor read from a registry
    and written back (copy, referrers index merge) keeps every field.
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    artifact_type: str | None = None
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> Descriptor:
        if not isinstance(data, dict):
            raise FormatError("a descriptor must be a JSON object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise FormatError("descriptor without a mediaType")
        if not isinstance(digest, str) or ":" not in digest:
            raise FormatError(f"descriptor with an invalid digest: {digest!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise FormatError(f"descriptor {digest} with an invalid size: {size!r}")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise FormatError(f"descriptor {digest}: annotations must map strings to strings")
        artifact_type = data.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise FormatError(f"descriptor {digest}: artifactType must be a string")
        platform = data.get("platform")
        urls = data.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise FormatError(f"descriptor {digest}: urls must be a list of strings")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=dict(annotations),
            artifact_type=artifact_type,
            platform=Platform.from_dict(platform) if isinstance(platform, dict) else None,
            urls=tuple(urls),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_dict()
        if self.urls:
            out["urls"] = list(self.urls)
        out.update(self.extra)
        return out
