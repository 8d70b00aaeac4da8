"""A verification put together: :class:`VerifyOptions` from plain values, the one way in for the
CLI (``opk-sign verify``, ``pr-check``), the verify action and Python callers.

:func:`build_verify_options` takes what a user can say (a policy or none, key sources as files, a
trust repository or not, TSA certificates, what to verify) and returns the options, or, when no
policy is given and the installed trust repository's mapping decides, a function choosing the
options per image (verification by default, docs/trust.md). Nothing here knows about argparse or
the Actions runner: each front end turns its own input into these arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opk_sign.errors import FormatError, UsageError
from opk_sign.http import DEFAULT_HTTP, HTTPConfig, new_session
from opk_sign.issuer import default_issuer
from opk_sign.oci.descriptor import Platform
from opk_sign.pktoken import ExpiryPolicy, OPKeySource
from opk_sign.pktoken.verify import MAX_AGE_24H, PKTokenCache
from opk_sign.policy import (
    AllOf,
    IdentityPolicy,
    Origin,
    SourceDict,
    SourceList,
    policy_from_document,
    policy_from_fields,
    policy_issuers,
    signed_repositories,
)

if TYPE_CHECKING:
    # BuildKit's source requirements: imported when a verification asks for one (issue 13).
    from opk_sign.payloads.buildkit import PlatformSources, SourceRequirement
    from opk_sign.tlog.checkpoint import TlogTrust
    from opk_sign.trust.client import TrustClient
    from opk_sign.trust.jwks_archive import JWKSArchive
    from opk_sign.trust.timestamp import TSATrust


@dataclass(frozen=True)
class VerifyOptions:
    """What an image must satisfy, and the trust material to decide it with."""

    policy: IdentityPolicy
    keys: OPKeySource
    issuers: frozenset[str]
    expiry: ExpiryPolicy = MAX_AGE_24H
    #: Predicate types each platform manifest must carry a valid attestation of.
    attestations: tuple[str, ...] = ()
    #: Verify the index and only this platform's manifest (else every platform).
    platform: Platform | None = None
    now: float | None = None
    #: Trusted timestamp authorities: a bundle's RFC 3161 timestamps count only with these.
    tsa: TSATrust | None = None
    #: The repository signatures must name, when not the image's own (a mirror's canonical name).
    signed_name: str | None = None
    #: Repositories a signature may also name (``--signed-repository``): where a copy was signed.
    signed_repositories: tuple[str, ...] = ()
    #: ``source-repository`` / ``source-commit``: what each platform manifest's BuildKit SLSA
    #: provenance must name (docs/official-images.md); None: not checked.
    source: SourceRequirement | PlatformSources | None = None
    #: Trusted transparency log and witness keys: a bundle's log entries are checked with these.
    tlog: TlogTrust | None = None
    #: Every bundle must carry a verified log entry (``--require-tlog``, ``transparency:
    #: required``): a stripped entry is a failed downgrade (docs/transparency.md).
    require_tlog: bool = False
    #: PK tokens this run has verified (each distinct token's CIC and GQ256 checked once); the
    #: options :func:`build_verify_options` makes for one run share one.
    pktoken_cache: PKTokenCache = field(default_factory=PKTokenCache, compare=False, repr=False)


#: Options for one image, or a function choosing them per image (the TUF mapping's policies).
OptionsFor = Callable[[str], VerifyOptions]


def options_for(options: VerifyOptions | OptionsFor, image: str) -> VerifyOptions:
    """The options that apply to ``image``."""
    return options if isinstance(options, VerifyOptions) else options(image)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# --- the identity policy ------------------------------------------------------------------------


#: A policy file is a few lines a reviewer reads; these bound what reading one may cost.
_POLICY_MAX_BYTES = 64 * 1024
_POLICY_MAX_DEPTH = 16
_POLICY_MAX_ENTRIES = 256


class _Refused(Exception):
    """Something a policy file may not hold, at a line; :func:`load_policy_file` names the file."""

    def __init__(self, line: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.line, self.message, self.hint = line, message, hint


def load_policy_file(path: Path) -> SourceDict:
    """A policy file's parsed document (YAML, or JSON, which YAML reads too), read strictly so that
    the verifier reads what a reviewer reads: every problem is a usage error naming the file, the
    line and the key. ``policy_from_document`` builds the policy, its errors pointing at lines too.

    Refused: duplicate keys (a reviewer reads the first, a YAML loader keeps the last), keys YAML
    does not read as strings, anchors, aliases and merge keys, tags, several documents, more than
    64 KiB, nesting deeper than 16 or more than 256 keys and items. Scalars YAML would turn into
    numbers or dates (``repository-id: 123456``, ``sha: 0123456``) are kept as the text written;
    null and true/false (``yes``, ``on``...) stay null and booleans, which the policy refuses.
    So are characters showing a reviewer other lines than YAML reads (:data:`_MISLEADING`).
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(_POLICY_MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(f"cannot read the policy file {path}: {err}") from None
    if len(data) > _POLICY_MAX_BYTES:
        raise UsageError(f"policy file {path} is larger than {_POLICY_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UsageError(f"policy file {path}, line {line}: not UTF-8 ({err.reason})") from None
    try:
        return _parse_policy(text, str(path))
    except _Refused as err:
        raise UsageError(
            f"policy file {path}, line {err.line}: {err.message}", hint=err.hint
        ) from None


#: Every escape of a double-quoted value, as pairs; only backslash, quote and slash are clear:
#: a reviewer reads "\x7c" as a regex's literal "|", YAML decodes it to an alternation.
_ESCAPE = re.compile(r"\\(.|$)", re.S)


def _unclear_escape(raw: str) -> str | None:
    for found in _ESCAPE.finditer(raw):
        if found.group(1) not in ("\\", '"', "/"):
            return found.group(0)
    return None


#: Characters that make a reviewer and YAML see different lines: NEL, LS, PS and a lone CR are
#: line breaks to YAML but not to most viewers (``# note<NEL>repository: evil/app`` shows as a
#: comment); bidirectional overrides reorder how a line is shown (Trojan Source).
_MISLEADING = re.compile("[\x85\u2028\u2029\u202a-\u202e\u2066-\u2069]|\r(?!\n)")


def _parse_policy(text: str, source: str) -> SourceDict:
    import yaml
    from yaml.reader import ReaderError

    found = _MISLEADING.search(text)
    if found:
        char = found.group()
        why = (
            "a bidirectional control"
            if char >= "\u202a"
            else "a line break to YAML, not to most viewers"
        )
        raise _Refused(
            text[: found.start()].count("\n") + 1,
            f"character U+{ord(char):04X} ({why}) shows a reviewer other lines than YAML reads",
            "remove it; end lines with LF or CRLF",
        )
    try:
        loader = _policy_loader()(text, source)  # reading starts here: it refuses characters
        try:
            node = loader.get_single_node()
            if node is None:
                raise _Refused(1, "the file is empty; expected a mapping of policy fields")
            if not isinstance(node, yaml.MappingNode):
                raise _Refused(_line(node), "expected a mapping of policy fields at the top")
            document = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        if isinstance(err, yaml.composer.ComposerError) and "single document" in str(err.context):
            raise _Refused(line, "a second document starts here; a policy file holds one") from None
        problem = ", ".join(str(p) for p in (err.context, err.problem) if p)
        tabs = (
            "indent with spaces: YAML, which reads JSON too, refuses tabs"
            if "\\t" in problem
            else None
        )
        raise _Refused(line, f"not valid YAML or JSON: {problem}", tabs) from None
    except ReaderError as err:
        line = text[: err.position].count("\n") + 1
        raise _Refused(
            line, f"not valid YAML or JSON: {err.reason} (#x{err.character:04x})"
        ) from None
    except yaml.YAMLError as err:
        raise _Refused(1, f"not valid YAML or JSON: {type(err).__name__}") from None
    except (RecursionError, ValueError) as err:  # bounded above; a backstop, never a traceback
        raise _Refused(1, f"cannot be read ({type(err).__name__})") from None
    assert isinstance(document, SourceDict)  # the root node is a mapping
    return document


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


@functools.cache
def _policy_loader() -> Callable[[str, str], Any]:
    """PyYAML's safe loader, made strict (a class built on first use: yaml loads lazily)."""
    import yaml
    from yaml.events import AliasEvent, CollectionStartEvent, Event, NodeEvent, ScalarEvent
    from yaml.nodes import MappingNode, Node, ScalarNode

    base = "tag:yaml.org,2002:"
    surrogate = re.compile("[\ud800-\udfff]")
    kinds = {"null": "null", "bool": "a boolean", "int": "a number", "float": "a number"}

    class StrictPolicyLoader(yaml.SafeLoader):
        def __init__(self, text: str, source: str) -> None:
            super().__init__(text)
            self.text = text
            self.source = source
            self.path: list[str] = []  # the containers being composed, as key-path labels
            self.entries = 0

        def key_path(self, label: str) -> str:
            labels = [*self.path[1:], label]
            return "".join(
                p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(labels)
            )

        def compose_node(self, parent: Node | None, index: Any) -> Node | None:
            event: Event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped stub
            line = event.start_mark.line + 1 if event.start_mark else 1
            if isinstance(index, int):
                label = f"[{index}]"
            elif isinstance(index, Node):  # the value of the key just composed
                label = str(index.value) if isinstance(index, ScalarNode) else "?"
                self.refuse_bad_key(parent, index)
            elif isinstance(event, ScalarEvent):  # a key, or the top of the document
                label = event.value if parent is not None else ""
            else:
                label = "?" if parent is not None else ""
            where = f"key {self.key_path(label)!r}" if label else "the document"
            if isinstance(event, AliasEvent):
                raise _Refused(
                    line, f"{where} uses the alias *{event.anchor}", "write every value out"
                )
            if isinstance(event, NodeEvent) and event.anchor is not None:
                raise _Refused(
                    line, f"{where} defines the anchor &{event.anchor}", "write every value out"
                )
            if isinstance(event, ScalarEvent) and surrogate.search(event.value):
                # "\ud83d\ude00" is one character in JSON, two lone halves in YAML: no one reading
                raise _Refused(
                    line,
                    f"{where} holds a \\u escape of half a character (a surrogate)",
                    "write the character itself",
                )
            if (
                isinstance(event, ScalarEvent)
                and event.style == '"'
                and event.start_mark
                and event.end_mark
            ):
                raw = self.text[event.start_mark.index : event.end_mark.index]
                escape = _unclear_escape(raw)
                if escape:
                    raise _Refused(
                        line,
                        f"{where}: the escape {escape!r} in a double-quoted value is "
                        "decoded by YAML before any regular expression sees it",
                        "write the value in single quotes, where a backslash is a backslash",
                    )
            tag = getattr(event, "tag", None)
            if tag is not None:  # one reading: no !!str, !!int, nor tags of one's own
                raise _Refused(line, f"{where} has the tag {tag}", "remove it; quote text")
            if index is not None:
                self.entries += 1
                if self.entries > _POLICY_MAX_ENTRIES:
                    raise _Refused(line, f"{where}: more than {_POLICY_MAX_ENTRIES} keys and items")
            if not isinstance(event, CollectionStartEvent):
                return super().compose_node(parent, index)
            if len(self.path) >= _POLICY_MAX_DEPTH:
                raise _Refused(line, f"{where} is nested deeper than {_POLICY_MAX_DEPTH} levels")
            self.path.append(label)
            try:
                return super().compose_node(parent, index)
            finally:
                self.path.pop()

        def refuse_bad_key(self, mapping: Node | None, key: Node) -> None:
            """A key is a string, once per mapping: checked as read, so the first problem in
            the file is the one reported."""
            line = _line(key)
            if not isinstance(key, ScalarNode):
                kind = "mapping" if isinstance(key, MappingNode) else "list"
                inside = self.key_path("")
                raise _Refused(
                    line, f"a key must be a string, not a {kind}" + (inside and f" in {inside!r}")
                )
            name = self.key_path(key.value)
            if key.tag == base + "merge":
                raise _Refused(line, f"key {name!r}: merge keys are not allowed")
            if key.tag != base + "str":
                kind = kinds.get(key.tag.removeprefix(base), key.tag.removeprefix(base))
                raise _Refused(
                    line, f"key {name!r} is read as {kind}, not a string", "quote it, or fix it"
                )
            assert isinstance(mapping, MappingNode)  # values follow keys in mappings
            for earlier, _ in mapping.value:
                if earlier.value == key.value:
                    raise _Refused(
                        line,
                        f"key {name!r} appears twice (first on line {_line(earlier)})",
                        "a reviewer reads one and a YAML loader keeps the other: keep one",
                    )

    def mapping(loader: StrictPolicyLoader, node: MappingNode) -> SourceDict:
        result = SourceDict()
        lines: dict[Any, int] = {}
        for key, value in node.value:
            lines[key.value] = _line(key)
            result[key.value] = loader.construct_object(value, deep=True)
        result.origin = Origin(loader.source, _line(node), lines)
        return result

    def sequence(loader: StrictPolicyLoader, node: yaml.SequenceNode) -> SourceList:
        result = SourceList(loader.construct_object(item, deep=True) for item in node.value)
        result.origin = Origin(
            loader.source, _line(node), {i: _line(n) for i, n in enumerate(node.value)}
        )
        return result

    def text(loader: StrictPolicyLoader, node: ScalarNode) -> str:
        return str(node.value)  # the text as written: 123456 is the ID "123456", 0755 is "0755"

    StrictPolicyLoader.add_constructor(base + "map", mapping)
    StrictPolicyLoader.add_constructor(base + "seq", sequence)
    for kind in ("str", "int", "float", "timestamp"):
        StrictPolicyLoader.add_constructor(base + kind, text)
    return StrictPolicyLoader


def build_policy(
    fields: Mapping[str, str] | None = None,
    policy_file: Path | None = None,
    *,
    issuer: str | None = None,
) -> AllOf | None:
    """The identity policy from claim fields (``{"repository": "o/app", "ref-regex": ...}``, the
    issuer apart) or from a policy file, not both; None when neither is given.

    The flags to say so are the caller's: this names fields as ``--field`` since that is how the
    CLI and the action's inputs both spell them in their own messages.
    """
    given = {name: value for name, value in (fields or {}).items() if value is not None}
    issuer = issuer or default_issuer()
    if policy_file is not None:
        if given:
            raise UsageError(
                "give the identity policy as --policy FILE or as flags, not both",
                hint=f"flags also given: {', '.join('--' + k for k in given)}",
            )
        return policy_from_document(load_policy_file(policy_file), default_issuer=issuer)
    if not given:
        return None
    return policy_from_fields({"issuer": issuer, **given})


def no_policy_error(trust_repository: bool = False) -> UsageError:
    hint = "require the signer, e.g. --repository octo-org/app (or --policy FILE)"
    if trust_repository:
        hint += (
            ", or install a trust repository (`opk-sign trust init`) whose mapping names the policy"
        )
    return UsageError(
        "no identity policy: verifying without one would accept any signer", hint=hint
    )


# --- trust material -----------------------------------------------------------------------------


def trust_installed() -> bool:
    """Whether a TUF trust repository is installed (``opk-sign trust init``)."""
    from opk_sign.trust.location import CONFIG_FILE, default_trust_dir

    return (default_trust_dir() / CONFIG_FILE).is_file()


def installed_trust_client(
    *,
    offline: bool = False,
    notice: Callable[[str], None] = _stderr,
    http: HTTPConfig = DEFAULT_HTTP,
) -> TrustClient | None:
    """The installed TUF trust repository, refreshed once (rollback, freeze, mix-and-match:
    TrustError, exit 14); None when none is installed and ``offline`` is not asked for."""
    if not offline and not trust_installed():
        return None  # python-tuf not even imported (issue 13)
    from opk_sign.trust.client import TrustClient

    client = TrustClient(offline=offline, session=new_session(http))
    client.refresh()
    if client.notice:
        notice(f"notice: {client.notice}")
    return client


def load_jwks_archive(path: Path) -> JWKSArchive:
    from opk_sign.trust.jwks_archive import JWKSArchive

    try:
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read --jwks-archive {path}: {err.strerror}") from None
    return JWKSArchive.from_json(data)


def load_tsa_trust(tsa_certs: Path | None, trust: TrustClient | None) -> TSATrust | None:
    """Trusted TSA certificates: a PEM file and those the trust repository distributes."""
    pem = b""
    if tsa_certs is not None:
        try:
            pem += tsa_certs.read_bytes()
        except OSError as err:
            raise UsageError(f"cannot read --tsa-certs {tsa_certs}: {err.strerror}") from None
    if trust is not None:
        pem += b"\n" + (trust.tsa_certs() or b"")
    if not pem.strip():
        return None
    from opk_sign.trust.timestamp import TSATrust  # cryptography.x509: only with TSAs (issue 13)

    return TSATrust.from_pem(pem)


def load_tlog_trust(tlog_keys: Path | None, trust: TrustClient | None) -> TlogTrust | None:
    """Trusted transparency log and witness keys: a keys file (``--tlog-keys``) and the trust
    repository's ``tlog/keys.txt`` target, merged. The log code is imported only when there are
    keys (start-up, issue 13)."""
    sources: list[tuple[bytes, str]] = []
    if tlog_keys is not None:
        try:
            data = tlog_keys.read_bytes()
        except OSError as err:
            raise UsageError(f"cannot read --tlog-keys {tlog_keys}: {err.strerror}") from None
        sources.append((data, f"--tlog-keys {tlog_keys}"))
    if trust is not None:
        from opk_sign.trust.client import TLOG_KEYS_TARGET

        target = trust.target(TLOG_KEYS_TARGET)
        if target is not None:
            sources.append((target, f"trust repository target {TLOG_KEYS_TARGET}"))
    if not sources:
        return None
    from opk_sign.tlog.checkpoint import TlogTrust

    found = [TlogTrust.parse(data, where) for data, where in sources]
    merged = found[0]
    for more in found[1:]:
        merged = merged.merged(more)
    return merged


def _expiry(expiry: str | ExpiryPolicy) -> ExpiryPolicy:
    if isinstance(expiry, ExpiryPolicy):
        return expiry
    try:
        return ExpiryPolicy.from_name(expiry)
    except FormatError as err:
        raise UsageError(f"--expiry-policy: {err}") from None


def _platform(platform: str | Platform | None) -> Platform | None:
    if platform is None or isinstance(platform, Platform):
        return platform
    try:
        return Platform.parse(platform)
    except Exception:  # any parse failure of a user's value is a usage error
        raise UsageError(f"--platform {platform!r}: expected OS/ARCH[/VARIANT]") from None


# --- the whole verification ---------------------------------------------------------------------


def build_verify_options(
    *,
    policy: IdentityPolicy | None = None,
    issuer: str | None = None,
    keys: OPKeySource | None = None,
    jwks_file: Path | None = None,
    jwks_archive_file: Path | None = None,
    tsa_certs_file: Path | None = None,
    trust_repository: bool = True,
    offline: bool = False,
    expiry: str | ExpiryPolicy = "24h",
    attestations: Sequence[str] = (),
    platform: str | Platform | None = None,
    signed_in: Sequence[str] = (),
    notice: Callable[[str], None] = _stderr,
    http: HTTPConfig = DEFAULT_HTTP,
    tlog_keys_file: Path | None = None,
    require_tlog: bool = False,
    trust_client: TrustClient | None = None,
    source_repository: str | None = None,
    source_commit: str | None = None,
) -> VerifyOptions | OptionsFor:
    """The options of a run (or, with no ``policy``, a function choosing them per image from the
    installed trust repository's mapping).

    Keys: ``keys`` if given, else the JWKS file, else the issuer's live JWKS by discovery (fetched
    once per run); followed by a JWKS archive file and the trust repository's archive, for keys
    since rotated out. The trust repository (``trust_repository``, when one is installed) also
    adds its TSA certificates. ``signed_in`` names repositories a signature may have been made
    for besides the image's own (``--signed-repository``: where a copy was signed); a policy
    document's and a mapping rule's ``signed-repository`` add to them. Usage errors come before
    any trust data is fetched. ``trust_client``: a trust repository already refreshed by the
    caller (the pull-time verifier, with its own deadline and cache), used instead of the
    installed one.
    """
    from opk_sign.oidc.discovery import JWKSCache
    from opk_sign.trust.jwks_archive import KeySourceChain
    from opk_sign.verify.keys import jwks_from_file

    issuer = issuer or default_issuer()
    also_signed_in = signed_repositories(signed_in)
    expiry_policy = _expiry(expiry)
    wanted_platform = _platform(platform)
    trust = (
        trust_client
        if trust_client is not None
        else installed_trust_client(offline=offline, notice=notice, http=http)
        if trust_repository
        else None
    )
    if policy is None and trust is None:
        raise no_policy_error(trust_repository=True)
    if expiry_policy.max_age is None and not expiry_policy.check_exp:
        notice(
            "warning: --expiry-policy never: PK tokens are accepted however old they are; "
            "a leaked signing key could sign forever"
        )
    if keys is None:
        keys = (
            jwks_from_file(jwks_file, issuer)
            if jwks_file is not None
            else JWKSCache(new_session(http))
        )
    archives: list[OPKeySource] = []
    if jwks_archive_file is not None:
        archives.append(load_jwks_archive(jwks_archive_file))
    if trust is not None:
        archive = trust.jwks_archive(issuer)
        if archive is not None:
            archives.append(archive)
    if archives:
        keys = KeySourceChain(keys, *archives)
    tsa = load_tsa_trust(tsa_certs_file, trust)
    tlog = load_tlog_trust(tlog_keys_file, trust)
    if require_tlog and tlog is None:
        raise UsageError(
            "--require-tlog: no transparency log key is trusted",
            hint="give --tlog-keys FILE, or a trust repository with a tlog/keys.txt target",
        )
    chosen_keys = keys
    pktoken_cache = PKTokenCache()  # the run's, whichever policy each image gets

    def make(
        policy: IdentityPolicy, signed_name: str | None = None, rule_signed_in: Sequence[str] = ()
    ) -> VerifyOptions:
        from_policy = policy.signed_repositories if isinstance(policy, AllOf) else ()
        in_policy = (policy.source if isinstance(policy, AllOf) else None) or {}
        return VerifyOptions(
            policy=policy,
            keys=chosen_keys,
            # The issuer asked for, and those the policy itself requires by name: a policy file
            # or trust-repository policy saying `issuer: <GHES>` is honoured, its keys found by
            # discovery like any issuer's (only a token satisfying the policy can pass).
            issuers=frozenset({issuer}) | policy_issuers(policy),
            expiry=expiry_policy,
            attestations=tuple(attestations),
            platform=wanted_platform,
            tsa=tsa,
            signed_name=signed_name,
            signed_repositories=tuple(
                dict.fromkeys((*also_signed_in, *from_policy, *rule_signed_in))
            ),
            pktoken_cache=pktoken_cache,
            tlog=tlog,
            require_tlog=require_tlog or _transparency_required(policy),
            source=_source(
                source_repository or in_policy.get("source-repository"),
                source_commit or in_policy.get("source-commit"),
            ),
        )

    if policy is not None:
        return make(policy)
    assert trust is not None
    return _mapped(trust, make)


def _source(repository: str | None, commit: str | None) -> SourceRequirement | None:
    if repository is None and commit is None:
        return None
    from opk_sign.payloads.buildkit import SourceRequirement

    return SourceRequirement(repository, commit)


def _transparency_required(policy: IdentityPolicy) -> bool:
    """A policy document's (or mapping rule's policy's) ``transparency: required``."""
    return isinstance(policy, AllOf) and policy.transparency == "required"


def _mapped(
    trust: TrustClient, make: Callable[[IdentityPolicy, str | None, Sequence[str]], VerifyOptions]
) -> OptionsFor:
    """Verification by default: the mapping names each image's policy; a mapped name must verify."""
    mapping = trust.mapping()
    policies: dict[str, AllOf] = {}
    lock = threading.Lock()

    def choose(image: str) -> VerifyOptions:
        rule = mapping.lookup(image)
        if rule is None:
            raise UsageError(
                f"no policy applies to {image}: the trust repository's mapping does not cover it",
                hint="give the policy with flags (--repository ...) or --policy FILE",
            )
        with lock:  # images are verified in parallel; each policy is fetched once
            if rule.policy not in policies:
                policies[rule.policy] = trust.policy(rule.policy)
        chosen = make(policies[rule.policy], rule.name, rule.signed_repositories)
        if rule.transparency == "required":  # the rule's own `transparency: required`
            chosen = dataclasses.replace(chosen, require_tlog=True)
        return chosen

    return choose


def describe_policy(options: VerifyOptions | OptionsFor) -> str:
    """The policy in one line, for reports (the mapping's, per image, when it decides)."""
    if isinstance(options, VerifyOptions):
        return options.policy.describe()
    return "per image, from the trust repository's mapping"
