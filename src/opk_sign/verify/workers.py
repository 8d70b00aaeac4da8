"""A batch on every core: worker processes, each with its own registry client and threads.

Verifying an image is ~11 ms of Python (the HTTP client, the PK token and signature checks), so a
batch in one process is bound to one core by the interpreter lock however many threads wait on
the network. :func:`verify_in_workers` spreads a batch over ``workers`` processes: this one, which
verifies its share in its own threads with the caller's client from the first image on, and
``workers - 1`` worker processes. A worker is a new interpreter (``python -c``: never a fork of a
process that has threads, and unlike multiprocessing's spawn it never re-runs the caller's
``__main__``), with its own :class:`~opk_sign.oci.client.RegistryClient` built from the caller's
settings (credentials, docker config, insecure registries, HTTP settings) and its share of the
``jobs`` as threads. It talks to this process over its stdin and stdout.

This process stays the one place that holds trust and decides what each image is checked against:

- options per image are chosen here (a trust mapping's policy is fetched here, once) and sent to
  each worker once, pickled: TSA certificates travel as DER, the run's PK token cache as its id
  (each process keeps its own);
- the issuer's JWKS is fetched by this process's :class:`~opk_sign.oidc.discovery.JWKSCache`,
  once per run: a worker asks for it the first time a token names the issuer (under that image's
  deadline) and keeps it; a key source that does not pickle is asked through this process on
  every lookup. Either way exactly the keys and failures a one-process run would see;
- credentials are looked up once, here (a credential helper runs once per run), for the
  registries of the batch.

Images go out in input order, as workers have room (``jobs`` verified at once in all), and
results come back in input order as they are decided. A worker that dies (or stops answering for
longer than an image may take) costs only the images it held: each becomes a registry error (13,
the outcome unknown), a replacement is started, and the batch goes on. An interrupt (or the
caller closing the iterator) terminates the workers at once, and leaves this process's threads
still waiting on a registry to their deadlines.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import itertools
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, Pipe, wait
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Final

from opk_sign import deadline
from opk_sign.deadline import Deadline
from opk_sign.errors import (
    FormatError,
    IssuerError,
    NetworkError,
    OpkSignError,
    RegistryError,
    TrustError,
    UsageError,
    VerificationError,
)
from opk_sign.http import HTTPConfig
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.credentials import Credential, CredentialSource, registry_key
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference
from opk_sign.oidc.discovery import JWKSCache
from opk_sign.pktoken.verify import OPKeySource, select_key
from opk_sign.trust.jwks_archive import KeySourceChain
from opk_sign.urls import InsecureRegistries
from opk_sign.verify.options import VerifyOptions
from opk_sign.verify.outcome import ImageResult, Outcome

if TYPE_CHECKING:
    from cryptography import x509

#: A batch of fewer distinct images than this is verified in one process unless worker processes
#: are asked for: starting one (~0.4 s of imports) costs more than it saves below it.
MIN_IMAGES: Final = 64
#: Whether this process verifies its share of a batch as one of the ``workers`` (one process
#: fewer to start, and verifying from the first image on while the others start: measured as
#: fast or faster, and cheaper in CPU; docs/verify.md, Batches), or only hands images out (the
#: tests' choice when a worker must hold a given image). Only up to :data:`SHARE_HERE_UP_TO`
#: processes: with more, handing images out and taking results in is work enough for this
#: process's interpreter lock, which its own verifying threads would otherwise keep from it.
SHARE_HERE: Final = True
SHARE_HERE_UP_TO: Final = 4
#: A worker silent this long past an image's own deadline, with images in hand, is stuck.
HANG_GRACE: Final = 30.0
#: How long a worker may take to start (imports, its client) before it is given up.
START_WAIT: Final = 60.0
#: How long a finished worker may take to exit, and a terminated one to die.
EXIT_WAIT: Final = 5.0

VerifyFunction = Callable[[RegistryClient, str, VerifyOptions], ImageResult]


# --- how many -----------------------------------------------------------------------------------


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity, bounded by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def worker_count(requested: int | None, *, jobs: int, images: int) -> int:
    """Processes to verify a batch of ``images`` distinct images on, ``jobs`` at once, this one
    included; 0: this one alone, no worker process.

    ``requested`` None chooses: one per CPU, from :data:`MIN_IMAGES` images on. 0 or 1 never
    starts a worker; more than ``jobs`` or ``images`` would only idle.
    """
    if sys.platform == "win32" or not sys.executable:  # POSIX pipes; an interpreter to start
        return 0
    if requested is None:
        requested = available_cpus() if images >= MIN_IMAGES else 0
    count = min(requested, jobs, images)
    return count if count >= 2 else 0


# --- what travels -------------------------------------------------------------------------------


def _certificate(der: bytes) -> x509.Certificate:
    from cryptography.x509 import load_der_x509_certificate

    return load_der_x509_certificate(der)


def _reduce_certificate(certificate: x509.Certificate) -> tuple[Any, tuple[bytes]]:
    from cryptography.hazmat.primitives.serialization import Encoding

    return _certificate, (certificate.public_bytes(Encoding.DER),)


def dumps(value: Any) -> bytes:
    """``value`` pickled, TSA certificates included (as DER: they do not pickle themselves)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    x509 = sys.modules.get("cryptography.x509")
    if x509 is not None:  # else no certificate exists to pickle
        table = copyreg.dispatch_table.copy()
        table[x509.Certificate] = _reduce_certificate
        pickler.dispatch_table = table
    pickler.dump(value)
    return buffer.getvalue()


class _Resolved:
    """The credentials the parent looked up for the batch's registries (anonymous included)."""

    def __init__(self, found: Mapping[str, Credential]) -> None:
        self.found = dict(found)

    def credential_for(self, registry: str) -> Credential | None:
        return self.found.get(registry_key(registry))


@dataclass(frozen=True)
class ClientSettings:
    """What a worker needs to make a registry client like the parent's."""

    sources: tuple[CredentialSource, ...]
    http: HTTPConfig
    insecure: InsecureRegistries
    fallback_settle: float

    @classmethod
    def of(cls, client: RegistryClient, registries: Iterable[str] = ()) -> ClientSettings | None:
        """The settings of ``client`` with the credentials of ``registries`` looked up here, or
        None when a worker could not make the same client (a subclass, a keychain that is not
        plain, credential sources that do not pickle)."""
        keychain = client.keychain
        if type(client) is not RegistryClient or type(keychain) is not Keychain:
            return None
        found: dict[str, Credential] = {}
        for registry in registries:
            try:
                found[registry_key(registry)] = keychain.get(registry)
            except OpkSignError:
                continue  # each of its images reports it, as it would in one process
        sources = keychain.sources
        settings = cls(
            (_Resolved(found), *sources),
            client.http,
            client.insecure_registries,
            client.fallback_settle,
        )
        try:
            dumps(settings)
        except Exception:  # anything pickle refuses: verify in this process
            return None
        return settings

    def build(self, notice: Callable[[str], None] | None = None) -> RegistryClient:
        return RegistryClient(
            Keychain(self.sources),
            self.http,
            fallback_settle=self.fallback_settle,
            insecure_registries=self.insecure,
            notice=notice,
        )


# --- key sources in a worker --------------------------------------------------------------------


@dataclass(frozen=True)
class _RemoteJWKS:
    """The parent's :class:`JWKSCache` seen from a worker: each issuer's JWKS asked for once
    (what the parent's cache answers: fetched once per run, or its remembered failure)."""

    source: int

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        keys: list[Mapping[str, Any]] = _channel().jwks(self.source, issuer)["keys"]
        return select_key(keys, issuer, kid)


@dataclass(frozen=True)
class _RemoteKeys:
    """A key source that does not pickle, asked through the parent on every lookup."""

    source: int

    def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
        found: Mapping[str, Any] = _channel().ask(self.source, "op_key", (issuer, kid, issued_at))
        return found


class _KeySources:
    """The parent's side: each key source a worker may ask, by number."""

    def __init__(self) -> None:
        self.sources: dict[int, Any] = {}
        self._frozen: dict[int, OPKeySource] = {}
        self._alive: list[OPKeySource] = []  # the ids above stay theirs for the run

    def freeze(self, keys: OPKeySource) -> OPKeySource:
        """``keys`` as a worker gets it: the same sources, the live JWKS asked of the parent."""
        known = self._frozen.get(id(keys))
        if known is None:
            known = self._freeze(keys)
            self._frozen[id(keys)] = known
            self._alive.append(keys)
        return known

    def _freeze(self, keys: OPKeySource) -> OPKeySource:
        if type(keys) is JWKSCache:
            self.sources[id(keys)] = keys
            return _RemoteJWKS(id(keys))
        if type(keys) is KeySourceChain:
            return KeySourceChain(*(self.freeze(source) for source in keys.sources))
        try:
            dumps(keys)
        except Exception:
            self.sources[id(keys)] = keys
            return _RemoteKeys(id(keys))
        return keys

    def serve(self, source: int, method: str, args: tuple[Any, ...]) -> Any:
        keys = self.sources[source]
        if method == "jwks" and type(keys) is JWKSCache:
            return keys.get(*args)
        if method == "op_key":
            return dict(keys.op_key(*args))
        raise UsageError(f"a worker asked for {method!r} of a key source")


#: Error classes a worker raises again by name; others as the nearest of these.
_REBUILT: Final = (
    IssuerError,
    TrustError,
    RegistryError,
    NetworkError,
    VerificationError,
    FormatError,
    UsageError,
    OpkSignError,
)


def _rebuild(cls: type[OpkSignError], message: str, hint: str | None) -> OpkSignError:
    """The error a key source raised in the parent, raised again in a worker: its own class
    where that is made like any (message and hint), else the nearest such class above it."""
    if cls.__init__ is not OpkSignError.__init__:  # its own constructor (a deadline's)
        cls = next(base for base in _REBUILT if issubclass(cls, base))
    return cls(message, hint=hint)


# --- the worker process -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    client: ClientSettings
    threads: int
    verify: VerifyFunction
    run: Deadline | None
    per_image: float


class _Channel:
    """A worker's line to the parent: results and notices out, questions out and answers in."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        self._pending: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count()
        self._jwks: dict[tuple[int, str], dict[str, Any]] = {}
        self._jwks_lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def notice(self, text: str) -> None:
        self.send(("notice", text))

    def ask(self, source: int, method: str, args: tuple[Any, ...]) -> Any:
        request = next(self._ids)
        answered, answer = threading.Event(), list[Any]()
        with self._pending_lock:
            self._pending[request] = (answered, answer)
        bound = deadline.current()
        self.send(("call", request, source, method, args, bound))
        # The parent answers within the image's deadline (it works under it); a parent that
        # does not answer at all is gone, and this process with it.
        left = bound.remaining() + HANG_GRACE if bound is not None else None
        if not answered.wait(left):
            with self._pending_lock:
                self._pending.pop(request, None)
            raise TrustError(f"the parent process did not answer for the keys of source {source}")
        ok, value = answer
        if ok:
            return value
        raise _rebuild(*value)

    def answer(self, request: int, ok: bool, value: Any) -> None:
        with self._pending_lock:
            waiting = self._pending.pop(request, None)
        if waiting is not None:
            waiting[1].extend((ok, value))
            waiting[0].set()

    def jwks(self, source: int, issuer: str) -> dict[str, Any]:
        with self._jwks_lock:  # held across the question: the threads of a worker ask once
            found = self._jwks.get((source, issuer))
            if found is None:
                found = self.ask(source, "jwks", (issuer,))
                self._jwks[(source, issuer)] = found
            return found


class _ThisProcess:
    #: The worker's line to its parent; None in any other process.
    channel: _Channel | None = None


def _channel() -> _Channel:
    if _ThisProcess.channel is None:
        raise TrustError("a worker's key source used outside a worker process")
    return _ThisProcess.channel


def _unexpected(image: str, err: BaseException) -> ImageResult:
    message = (
        f"verifying {image} failed unexpectedly in a worker process "
        f"({type(err).__name__}: {err}); the outcome is unknown"
    )
    return ImageResult(image, Outcome.REGISTRY_ERROR, message)


#: What a worker process runs: SIGINT ignored before anything else (the parent decides when to
#: stop: Ctrl-C reaches every process of the terminal's group, and a worker dying of it would
#: turn its images into errors before the parent reports), the parent's import path, then
#: :func:`_worker_main`. No module of the caller's is run again (multiprocessing's spawn and
#: forkserver would re-run the caller's ``__main__``).
_BOOT: Final = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from opk_sign.verify.workers import _worker_main; _worker_main()"
)


def _worker_main() -> None:  # pragma: no cover - runs in a worker process
    """A worker: verify the images the parent sends, ``threads`` at once, until told to stop.

    The parent's messages come on stdin and ours go out on stdout; both are moved off fds 0 and
    1 first, so that nothing printed by accident can garble them.
    """
    incoming, outgoing = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    conn = Connection(incoming, writable=False)
    channel = _ThisProcess.channel = _Channel(Connection(outgoing, readable=False))
    setup: _Setup = pickle.loads(conn.recv_bytes())  # noqa: S301 - from our own parent process
    client = setup.client.build(notice=channel.notice)
    options: dict[int, VerifyOptions] = {}
    pool = ThreadPoolExecutor(setup.threads, thread_name_prefix="opk-sign-verify")
    channel.send(("ready",))

    def one(index: int, image: str, chosen: VerifyOptions) -> None:
        try:
            with deadline.within(setup.run), deadline.within(setup.per_image, f"verifying {image}"):
                result = setup.verify(client, image, chosen)
        except Exception as err:
            result = _unexpected(image, err)
        try:
            channel.send(("result", index, result))
        except OSError:
            os._exit(0)  # the parent is gone

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # the parent is gone: nobody to report to
        kind = message[0]
        if kind == "image":
            _, index, image, chosen = message
            pool.submit(one, index, image, options[chosen])
        elif kind == "options":
            options[message[1]] = pickle.loads(message[2])  # noqa: S301 - from our parent
        elif kind == "answer":
            channel.answer(*message[1:])
        elif kind == "stop":
            break
    pool.shutdown(wait=True)
    client.close()


# --- the parent ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    #: To the worker (its stdin), and from it (its stdout).
    out: Connection
    inn: Connection
    threads: int
    room: int
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Images sent and not yet answered, by input index.
    held: dict[int, str] = field(default_factory=dict)
    options_sent: set[int] = field(default_factory=set)
    last_heard: float = field(default_factory=time.monotonic)
    #: Whether it said it is ready (set up, its client made): it is given images from then on.
    ready: bool = False

    @classmethod
    def start(cls, setup: bytes, threads: int) -> _Worker:
        """A worker process (a new interpreter: never a fork of this one, which has threads)."""
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps([str(path) for path in sys.path])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert process.stdin is not None and process.stdout is not None
        out = Connection(os.dup(process.stdin.fileno()), readable=False)
        inn = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()
        # Room for as many images as it verifies at once, and as many waiting, so that its
        # threads never wait for the parent's next image.
        worker = cls(process, out, inn, threads, 2 * threads)
        try:
            worker.out.send_bytes(setup)
        except OSError:
            worker.end(terminate=True)
            raise
        return worker

    def send(self, message: tuple[Any, ...]) -> None:
        with self.send_lock:
            self.out.send(message)

    def end(self, *, terminate: bool) -> None:
        """Wait for it to exit (``terminate``: make it), then close its lines."""
        if terminate and self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.out.close()
        self.inn.close()

    def exit_status(self) -> str:
        try:
            code = self.process.wait(0.5)
        except subprocess.TimeoutExpired:
            return "its connection was lost"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"


class _Threads:
    """This process's verifying threads: daemon threads, so that an interrupted run ends at once
    (a thread still waiting on a registry is left to its deadline, never waited for)."""

    def __init__(self, count: int) -> None:
        self.tasks: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self.threads = [
            threading.Thread(target=self._run, name="opk-sign-verify-here", daemon=True)
            for _ in range(max(1, count))
        ]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while (task := self.tasks.get()) is not None:
            task()

    def submit(self, task: Callable[[], None]) -> None:
        self.tasks.put(task)

    def stop(self) -> None:
        """Queued tasks are dropped; running ones end on their own."""
        while not self.tasks.empty():
            with contextlib.suppress(Empty):
                self.tasks.get_nowait()
        for _ in self.threads:
            self.tasks.put(None)


class _Here:
    """This process, as one of the batch's workers."""


_HERE: Final = _Here()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class _Batch:
    """The parent's side of one batch: workers, what each holds, results waiting their turn."""

    def __init__(
        self,
        images: Sequence[str],
        prepare: Callable[[str], VerifyOptions | ImageResult],
        *,
        verify: VerifyFunction,
        settings: ClientSettings,
        client: RegistryClient,
        workers: int,
        jobs: int,
        per_image: float,
        run: Deadline | None,
        notice: Callable[[str], None],
        share_here: bool,
    ) -> None:
        self.images = images
        self.prepare = prepare
        self.verify = verify
        self.settings = settings
        self.client = client
        shares = _split(jobs, workers)
        #: Threads of each worker process to start; this process's own share (``share_here``:
        #: it verifies as one of the ``workers``, from the first image on, while the others
        #: start), images it may hold for it, and those it holds.
        self.threads = shares[1:] if share_here else shares
        self.here_threads = shares[0] if share_here else 0
        self.here_room = 2 * self.here_threads
        self.here_held: set[int] = set()
        self.per_image = per_image
        self.run = run
        self.notice = notice
        self.notices: set[str] = set()
        self.results: dict[int, ImageResult] = {}
        self.pending: deque[int] = deque(range(len(images)))
        self.prepared: dict[int, VerifyOptions] = {}
        self.workers: list[_Worker] = []
        self.restarts = workers  # replacements allowed in all
        self.started = False
        #: No worker can be had (none would start, or they kept failing): the rest is verified
        #: in this process's threads.
        self.here_only = False
        self.keys = _KeySources()
        self.options: list[tuple[VerifyOptions, int, bytes]] = []
        self.local: _Threads | None = None
        self.helpers: ThreadPoolExecutor | None = None
        self.wake_r, self.wake_w = Pipe(duplex=False)
        self.wake_lock = threading.Lock()

    # --- results in order

    def __iter__(self) -> Iterator[ImageResult]:
        done = 0
        try:
            while done < len(self.images):
                if done in self.results:
                    yield self.results.pop(done)
                    done += 1
                    continue
                self.feed(done)
                if done not in self.results:
                    self.poll()
        finally:  # also an interrupt, or the caller closing early: the workers end now
            self.close(finished=done >= len(self.images))

    # --- sending

    def feed(self, due: int) -> None:
        """Send images, in input order, while some worker has room. An image is prepared (its
        options chosen) only when it is next; one decided then needs no worker at all, and if
        it is ``due`` (the next to report), it is reported before anything else is prepared."""
        while self.pending:
            index = self.pending[0]
            prepared = self.prepared.pop(index, None) or self.prepare(self.images[index])
            if isinstance(prepared, ImageResult):
                self.pending.popleft()
                self.results[index] = prepared  # decided here: no worker needed
                if index == due:
                    return
                continue
            target = None if self.here_only else self.with_room()
            if target is None and not self.here_only:
                self.prepared[index] = prepared  # sent when a worker has room
                return
            self.pending.popleft()
            if not isinstance(target, _Worker):
                self.verify_here(index, prepared, share=target is _HERE)
                continue
            try:
                chosen = self.options_id(prepared, target)
            except Exception:  # options that do not pickle: verified here, in a thread
                self.verify_here(index, prepared)
                continue
            self.send(target, ("image", index, self.images[index], chosen), index)

    def with_room(self) -> _Worker | _Here | None:
        """The worker with the most room (this process, for its share, first among equals);
        None when all are full. No worker to be had at all: everything is verified here."""
        if not self.started:  # the first image to send starts them
            self.start(len(self.threads))
        if not self.workers and not self.here_room:
            self.here_only = True
            return None
        best: _Worker | _Here | None = None
        most = 0
        if len(self.here_held) < self.here_room:
            best, most = _HERE, self.here_room - len(self.here_held)
        for worker in self.workers:
            # Nothing waits on a worker still starting (~0.4 s of imports): meanwhile this
            # process verifies, and a small batch may be done before any worker is ready.
            if worker.ready and worker.room - len(worker.held) > most:
                best, most = worker, worker.room - len(worker.held)
        return best

    def options_id(self, options: VerifyOptions, worker: _Worker) -> int:
        for known, number, data in self.options:  # noqa: B007 - the one found is used
            if known is options or (len(self.options) <= 64 and known == options):
                break
        else:
            frozen = replace(options, keys=self.keys.freeze(options.keys))
            number, data = len(self.options), dumps(frozen)
            self.options.append((options, number, data))
        if number not in worker.options_sent:
            worker.send(("options", number, data))
            worker.options_sent.add(number)
        return number

    def send(self, worker: _Worker, message: tuple[Any, ...], index: int) -> None:
        worker.held[index] = self.images[index]
        try:
            worker.send(message)
        except OSError:
            self.lost(worker, "it could not be reached")

    # --- workers

    def start(self, count: int) -> None:
        self.started = True
        for _ in range(count):
            threads = self.threads[len(self.workers) % len(self.threads)]
            setup = dumps(_Setup(self.settings, threads, self.verify, self.run, self.per_image))
            try:
                self.workers.append(_Worker.start(setup, threads))
            except (OSError, ValueError, subprocess.SubprocessError) as err:
                self.say(f"warning: cannot start a worker process ({err}); verifying here")

    def lost(self, worker: _Worker, why: str) -> None:
        """A worker died or hung: the images it held may have begun, so their outcome is
        unknown (13). A replacement starts while any are allowed; without workers, the rest is
        verified in this process."""
        if worker not in self.workers:
            return
        self.workers.remove(worker)
        worker.end(terminate=True)
        if not worker.ready:  # it was given nothing yet
            self.say(f"warning: a worker process {why} as it started; verifying on the others")
        for index, image in worker.held.items():
            err = RegistryError(
                f"{image}: the worker process verifying it {why}; the outcome is unknown",
                hint="verify it again; if this recurs, run with --workers 1 and report it",
            )
            self.results[index] = ImageResult(image, Outcome.REGISTRY_ERROR, err.diagnostics())
        worker.held.clear()
        if self.pending and self.restarts > 0:
            self.restarts -= 1
            self.start(1)

    def say(self, text: str) -> None:
        if text not in self.notices:
            self.notices.add(text)
            self.notice(text)

    # --- waiting

    def poll(self) -> None:
        """Wait for answers (at most a second), and take in everything that came."""
        wait([w.inn for w in self.workers] + [self.wake_r], timeout=1.0)
        while self.wake_r.poll():
            self.wake_r.recv_bytes()
        for worker in list(self.workers):
            try:
                while worker.inn.poll():
                    self.take(worker, worker.inn.recv())
            except (EOFError, OSError):  # its end closed: it died
                self.lost(worker, worker.exit_status())
                continue
            silent = time.monotonic() - worker.last_heard
            if worker.held and silent > self.per_image + HANG_GRACE:
                self.lost(worker, "stopped answering")
            elif not worker.ready and silent > START_WAIT:
                self.lost(worker, f"was not ready after {START_WAIT:.0f} s")

    def take(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        worker.last_heard = time.monotonic()
        kind = message[0]
        if kind == "result":
            _, index, result = message
            worker.held.pop(index, None)
            self.results[index] = result
        elif kind == "call":
            _, request, source, method, args, bound = message
            if self.helpers is None:
                self.helpers = ThreadPoolExecutor(4, thread_name_prefix="opk-sign-keys")
            self.helpers.submit(self.answer, worker, request, (source, method, args), bound)
        elif kind == "ready":
            worker.ready = True
        elif kind == "notice":
            self.say(message[1])

    def answer(
        self,
        worker: _Worker,
        request: int,
        question: tuple[int, str, tuple[Any, ...]],
        bound: Deadline | None,
    ) -> None:
        """A worker's question about keys, answered by the run's own key source."""
        try:
            with deadline.within(bound):
                reply: tuple[Any, ...] = (True, self.keys.serve(*question))
        except OpkSignError as err:
            reply = (False, (type(err), err.message, err.hint))
        except Exception as err:  # a key source's bug: fail closed, as trust material
            reply = (
                False,
                (TrustError, f"the key source failed: {type(err).__name__}: {err}", None),
            )
        with contextlib.suppress(OSError):  # the worker is gone: poll() reports its images
            worker.send(("answer", request, *reply))

    # --- in this process, for options that cannot travel

    def verify_here(self, index: int, options: VerifyOptions, *, share: bool = False) -> None:
        """Verify an image in this process's threads, with the caller's client: its share of
        the batch (``share``), or one no worker can take."""
        if self.local is None:
            self.local = _Threads(self.here_threads or sum(self.threads))
        image, client = self.images[index], self.client
        run, per_image = self.run, self.per_image
        if share:
            self.here_held.add(index)

        def one() -> None:
            try:
                with deadline.within(run), deadline.within(per_image, f"verifying {image}"):
                    result = self.verify(client, image, options)
            except Exception as err:
                result = _unexpected(image, err)
            self.results[index] = result
            self.here_held.discard(index)
            with self.wake_lock, contextlib.suppress(OSError):
                self.wake_w.send_bytes(b"")

        self.local.submit(one)

    # --- the end

    def close(self, *, finished: bool) -> None:
        # Finished, a worker is told to stop (it holds nothing); one still starting, or any
        # when interrupted, is terminated: nothing it could still do is wanted.
        for worker in self.workers:
            if finished and worker.ready:
                with contextlib.suppress(OSError):
                    worker.send(("stop",))
        for worker in self.workers:
            worker.end(terminate=not (finished and worker.ready))
        self.workers.clear()
        if self.helpers is not None:
            self.helpers.shutdown(wait=False, cancel_futures=True)
        if self.local is not None:
            self.local.stop()
        self.wake_r.close()
        self.wake_w.close()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def verify_in_workers(
    images: Sequence[str],
    prepare: Callable[[str], VerifyOptions | ImageResult],
    *,
    verify: VerifyFunction,
    settings: ClientSettings,
    client: RegistryClient,
    workers: int,
    jobs: int,
    per_image: float,
    run: Deadline | None,
    notice: Callable[[str], None] | None = None,
    share_here: bool | None = None,
) -> Iterator[ImageResult]:
    """Verify distinct ``images`` on ``workers`` processes, ``jobs`` at once in all; results in
    input order, each as soon as it and those before it are decided.

    ``prepare`` (run here, as each image comes up) gives an image's options, or its result when
    it is decided without a registry (a bad reference, no policy for it); ``verify`` (a
    module-level function: workers import it by name) verifies one image with a client: here
    ``client``, in a worker one made from ``settings``. ``share_here`` (default
    :data:`SHARE_HERE`): this process is one of the ``workers``, else it only hands images out
    to ``workers`` worker processes. Every image gets a result, never an exception: a worker
    that dies costs its images a registry error.
    """
    yield from _Batch(
        images,
        prepare,
        verify=verify,
        settings=settings,
        client=client,
        workers=workers,
        jobs=jobs,
        per_image=per_image,
        run=run,
        notice=notice or _stderr,
        share_here=(SHARE_HERE and workers <= SHARE_HERE_UP_TO)
        if share_here is None
        else share_here,
    )


def registries_of(images: Iterable[str]) -> set[str]:
    """The registries ``images`` name (those that parse)."""
    found = set()
    for image in images:
        try:
            found.add(Reference.parse(image).registry)
        except OpkSignError:
            continue
    return found


__all__ = [
    "MIN_IMAGES",
    "ClientSettings",
    "available_cpus",
    "dumps",
    "registries_of",
    "verify_in_workers",
    "worker_count",
]
