"""Image references, parsed and normalised as docker does.

Grammar (distribution's ``reference`` package)::

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [domain "/"] path            domain := host [":" port]
    path      := component ("/" component)*    component := [a-z0-9]+ (separator [a-z0-9]+)*
    separator := [_.] | "__" | "-"+            tag := [\\w][\\w.-]{0,127}

Normalisation: a first path element without ``.`` or ``:`` that is not ``localhost`` (and is
lowercase) is not a registry, so ``alpine`` is ``docker.io/library/alpine:latest`` and
``user/app`` is ``docker.io/user/app:latest``; ``index.docker.io`` is ``docker.io``.

:func:`canonical_name` goes further, for deciding which policy applies (never for where to pull
from): every spelling of one repository that a puller fetches from the same server is one name
(``ghcr.io:443/o/app`` is ``ghcr.io/o/app``; ``registry-1.docker.io/alpine`` is
``docker.io/library/alpine``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from opk_sign.errors import OpkSignError, UsageError
from opk_sign.oci.digest import split_digest
from opk_sign.urls import InsecureRegistries, is_loopback_host

DOCKER_HUB = "docker.io"
#: Where docker.io's registry API actually lives.
DOCKER_HUB_API = "registry-1.docker.io"
#: Host names that serve Docker Hub's repositories (``docker.io`` itself included).
DOCKER_HUB_ALIASES = frozenset(
    {DOCKER_HUB, "index.docker.io", DOCKER_HUB_API, "registry.hub.docker.com"}
)
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[0-9a-fA-F:.]+(?:%[a-zA-Z0-9]+)?\]"
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # ASCII, as the distribution spec
_HEX_ID = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """``registry/repository[:tag][@digest]``, normalised; ``str()`` gives the canonical form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
        """Parse and normalise ``text``; a reference that docker would refuse raises UsageError.

        Without a tag or digest, ``default_tag`` is used (docker's ``latest``); pass None to keep
        a bare repository name.
        """
        if not isinstance(text, str) or not text:
            raise UsageError("invalid image reference: empty")
        # gh's spelling of an OCI image: the scheme names the kind of thing, not a transport.
        text = text.removeprefix("oci://")
        if text.lower().startswith(("http://", "https://")):
            raise UsageError(
                f"invalid image reference {text!r}: an image reference has no URL scheme",
                hint="drop the scheme, e.g. registry.example:5000/o/app:v1 (HTTPS is used; plain "
                "HTTP only for loopback registries and those named with --insecure-registry)",
            )
        if text != text.strip():
            raise UsageError(f"invalid image reference {text!r}: surrounding whitespace")
        if _HEX_ID.fullmatch(text):
            raise UsageError(
                f"invalid image reference {text!r}: a 64-hex string is an image ID, not a name",
                hint="write a digest as name@sha256:<hex>",
            )
        name, digest = text, None
        if "@" in text:
            name, digest = text.split("@", 1)
            _check_digest(text, digest)
        tag = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise UsageError(
                    f"invalid image reference {text!r}: invalid tag {tag!r}",
                    hint="a tag has up to 128 characters from [A-Za-z0-9_.-] and does not start "
                    "with . or -",
                )
        registry, repository = _split_registry(text, name)
        if tag is None and digest is None:
            tag = default_tag
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What names the manifest in the registry API: the digest if pinned, else the tag."""
        if self.digest:
            return self.digest
        if self.tag:
            return self.tag
        raise UsageError(f"{self.name} names no tag or digest")

    @property
    def api_host(self) -> str:
        """The host serving the registry API (docker.io's lives at registry-1.docker.io)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def scheme(self) -> str:
        """The scheme with no registry named insecure: plain HTTP for loopback registries, as
        docker does; HTTPS everywhere else. A ``RegistryClient`` decides with the registries it
        was told are insecure (:meth:`api_base_with`); a reference never reads the environment.
        """
        return "http" if is_loopback_host(self.registry) else "https"

    @property
    def api_base(self) -> str:
        """``scheme://api_host`` with no registry named insecure (see :attr:`scheme`)."""
        return f"{self.scheme}://{self.api_host}"

    def api_base_with(self, insecure: InsecureRegistries) -> str:
        """``scheme://api_host``, plain HTTP where the registry is loopback or named in
        ``insecure`` (exactly as named: docs/registry.md, "Plain HTTP")."""
        return f"{insecure.scheme(self.registry)}://{self.api_host}"

    def with_digest(self, digest: str) -> Reference:
        _check_digest(f"{self}@{digest}", digest)
        return replace(self, digest=digest)

    def with_tag(self, tag: str | None) -> Reference:
        if tag is not None and not _TAG.fullmatch(tag):
            raise UsageError(f"invalid tag {tag!r}")
        return replace(self, tag=tag)

    def repo(self) -> Reference:
        """The repository alone (no tag, no digest)."""
        return replace(self, tag=None, digest=None)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def as_reference(value: Reference | str) -> Reference:
    return value if isinstance(value, Reference) else Reference.parse(value, default_tag=None)


def _check_digest(text: str, digest: str) -> None:
    try:
        split_digest(digest)
    except UsageError as err:
        raise UsageError(f"invalid image reference {text!r}: {err}", hint=err.hint) from None


def _split_registry(text: str, name: str) -> tuple[str, str]:
    slash = name.find("/")
    first = name[:slash] if slash >= 0 else ""
    if slash < 0 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        registry, path = DOCKER_HUB, name
    else:
        registry, path = first, name[slash + 1 :]
        if not _DOMAIN.fullmatch(registry):
            raise UsageError(f"invalid image reference {text!r}: invalid registry {registry!r}")
        _, port = _host_and_port(registry)
        if port is not None and int(port) > 65535:
            raise UsageError(f"invalid image reference {text!r}: port {port} is over 65535")
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path:
        raise UsageError(f"invalid image reference {text!r}: no repository name")
    for component in path.split("/"):
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if component and _PATH_COMPONENT.fullmatch(component.lower()):
            raise UsageError(f"invalid image reference {text!r}: repository name must be lowercase")
        raise UsageError(
            f"invalid image reference {text!r}: invalid repository path component {component!r}",
            hint="components are lowercase letters and digits, separated by '.', '_', '__' or '-'",
        )
    if len(registry) + 1 + len(path) > MAX_NAME_LENGTH:
        raise UsageError(
            f"invalid image reference {text!r}: name longer than {MAX_NAME_LENGTH} characters"
        )
    return registry, path


def _host_and_port(registry: str) -> tuple[str, str | None]:
    """``registry`` split at its port as written, if it names one (``[::1]`` does not: those
    colons are the address's)."""
    host, colon, port = registry.rpartition(":")
    if colon and port.isascii() and port.isdigit() and ("[" not in registry or host.endswith("]")):
        return host, port
    return registry, None


def canonical_registry(registry: str) -> str:
    """The one spelling of a registry host: lower-case, the port as a number (``:0443`` is the
    port ``:443`` reaches), without its scheme's default port (``:443`` for HTTPS; ``:80`` for a
    loopback registry, which is plain HTTP), and Docker Hub's host aliases as ``docker.io``."""
    host, port = _host_and_port(registry.lower())
    if port is not None:
        host = f"{host}:{int(port)}"
    default_port = ":80" if is_loopback_host(host) else ":443"
    host = host.removesuffix(default_port)
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def canonical_name(reference: Reference) -> str:
    """``registry/repository`` as policy sees it: the registry canonical
    (:func:`canonical_registry`), and a single-name Docker Hub repository under ``library/``
    (``registry-1.docker.io/alpine`` is ``docker.io/library/alpine``)."""
    registry = canonical_registry(reference.registry)
    repository = reference.repository
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return f"{registry}/{repository}"


def image_key(image: str) -> str:
    """One key per image however it is spelled (``alpine`` is docker.io/library/alpine:latest);
    a reference that does not parse is its own key."""
    try:
        return str(Reference.parse(image))
    except OpkSignError:
        return image
