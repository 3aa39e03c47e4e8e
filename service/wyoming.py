"""Home Assistant's wake word over the Wyoming protocol: ``tracekws wyoming``.

Home Assistant (and any Wyoming client: a satellite, a script) connects over TCP and speaks
newline-delimited JSON events:

- ``describe`` → ``info`` with one wake program, ``tracekws``, whose models are the
  profile's keywords (its labels but ``_unknown_`` and ``_silence_``);
- ``detect`` (optional, before ``audio-start``) → only the named keywords are reported in
  the streams that follow, until the next ``detect`` (an empty or absent list: all); unknown
  names get an ``error`` event;
- ``audio-start``, ``audio-chunk``…, ``audio-stop`` → a ``detection`` event (``name``: the
  keyword) each time a keyword is heard, and ``not-detected`` at ``audio-stop`` if none was.
  The connection stays open: a client may start another stream on it.

Detection is the service's own streaming detector (:class:`tracekws.model.detect.Detector`,
the one behind the WebSocket ``/stream``, same threshold setting), one per connection, fed
16 kHz 16-bit mono PCM; other rates, widths and channel counts are converted first with the
``wyoming`` package's audio utilities (stereo is averaged rather than summed, so it never
clips). A detection's ``timestamp`` is the ``timestamp`` of the audio chunk that completed the
keyword when the client sent one (Home Assistant does: it is how it finds its place in its
own audio), else the milliseconds of audio since ``audio-start`` at the end of the detecting
frame.

The profile's model is resolved read-only from the same settings, database and shipped model
as the HTTP service (``TRACEKWS_DATA_DIR``, ``TRACEKWS_DATABASE_URL``,
``TRACEKWS_MODEL_PATH``): ``default`` is the shipped model, any other profile its active
version (a corrupt one falls back to its nearest good ancestor, as the service does). It is
looked up again at ``audio-start`` when older than ``refresh`` seconds, so a new version made
by ``/adapt`` (or a rollback) is heard without a restart. This process never writes: it does
not run :meth:`Runtime.start`, which migrates the schema and clears the spool folder that a
running HTTP service beside it (the compose file's layout, one shared volume) may be using.

Events are read with limits (header line, data and payload sizes, an idle timeout), so a
client cannot make the server buffer an arbitrary amount; compute runs in a thread pool so
one client's audio never delays another's ``describe`` (Home Assistant waits 1 s for it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tracekws.model.audio import SAMPLE_RATE
from tracekws.model.detect import Detector
from tracekws.model.pipeline import SILENCE, UNKNOWN, KWSModel
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Attribution, Describe, Info, WakeModel, WakeProgram
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.wake import Detect, Detection, NotDetected

from .profiles import nearest_good
from .settings import DEFAULT_PROFILE, PROFILE_RE, Settings
from .store import CorruptWeights, Store, UnknownProfile, VersionInfo, sha256

log = logging.getLogger("tracekws.wyoming")

PROGRAM = "tracekws"
ATTRIBUTION = Attribution(name="tracekws", url="")  # no public home page to point at
# the shipped model learnt its words from this data set (pretrained/MODEL_CARD.md)
DATA_ATTRIBUTION = Attribution(name="Speech Commands data set by Google, CC BY 4.0",
                               url="https://arxiv.org/abs/1804.03209")
MAX_HEADER_BYTES = 64 * 1024  # one event's JSON line
MAX_DATA_BYTES = 64 * 1024  # its extra JSON data
REFRESH_S = 5.0  # a profile's active version is looked up again after this long


class ProfileError(RuntimeError):
    """The profile cannot be served (unknown, invalid name, no good version, no model)."""


@dataclass(frozen=True)
class Served:
    """The model a profile serves now."""

    model: KWSModel
    version: int
    sha256: str
    keywords: list[str]


def keywords(model: KWSModel) -> list[str]:
    """The labels a wake program offers: all but ``_unknown_`` and ``_silence_``."""
    return [lab for lab in model.labels if lab not in (UNKNOWN, SILENCE)]


def base_model_path(settings: Settings) -> Path:
    """The shipped model the service would use (``TRACEKWS_MODEL_PATH``: a file or a folder
    holding one), so both processes agree on what ``default`` is."""
    path = settings.model_file()
    if not path.is_file():
        raise ProfileError(f"no model file at {path}; set TRACEKWS_MODEL_PATH")
    return path


class ProfileSource:
    """Resolves one profile to its model, read-only, and re-resolves it when asked (blocking:
    call :meth:`refresh` from a worker thread)."""

    def __init__(self, settings: Settings, profile: str, refresh_s: float = REFRESH_S) -> None:
        if not PROFILE_RE.match(profile):
            raise ProfileError(f"invalid profile name {profile!r} (1-64 characters of "
                               "[A-Za-z0-9._-], starting with a letter or digit)")
        self.settings, self.profile, self.refresh_s = settings, profile, refresh_s
        base = base_model_path(settings)
        self.base_bytes = base.read_bytes()
        self.base_sha = sha256(self.base_bytes)
        self.base_model = KWSModel.from_bytes(self.base_bytes)
        self.base_model.net.eval()
        self.store: Store | None = None
        self.lock = threading.Lock()
        self.served: Served | None = None
        self.served = self._resolve()
        self.checked = time.monotonic()

    def _open_store(self) -> Store:
        """The service's database, without creating or migrating it."""
        from sqlalchemy.engine import make_url

        from . import db

        url = str(self.settings.database_url)
        if url.startswith("sqlite"):
            file = make_url(url).database
            if not file or not Path(file).is_file():
                raise UnknownProfile(self.profile)
        engine = db.make_engine(url, self.settings.db_busy_timeout_ms)
        if db.current_revision(engine) is None:
            engine.dispose()
            raise UnknownProfile(self.profile)
        return Store(engine, self.base_bytes, self.base_model.labels)

    def _load(self, info: VersionInfo) -> KWSModel:
        if info.sha256 == self.base_sha:
            return self.base_model
        if self.served is not None and info.sha256 == self.served.sha256:
            return self.served.model
        m = KWSModel.from_bytes(self.store.weights(info))  # sha256-checked
        m.net.eval()
        return m

    def _resolve(self) -> Served:
        """The profile's active version, or its nearest good ancestor when it is corrupt (the
        HTTP service's rule, :meth:`Profiles.resolve`)."""
        if self.profile == DEFAULT_PROFILE:
            return Served(self.base_model, 1, self.base_sha, keywords(self.base_model))
        try:
            if self.store is None:
                self.store = self._open_store()
            active = self.store.version(self.profile)
            try:
                model, info = nearest_good(
                    active, lambda n: self.store.version(self.profile, n), self._load)
            except CorruptWeights:
                raise ProfileError(f"profile {self.profile!r}: version {active.number} and all "
                                   "its ancestors are corrupt") from None
            if info is not active:
                log.error("corrupt weights: profile %s version %s; serving version %s",
                          self.profile, active.number, info.number)
        except UnknownProfile:
            from sqlalchemy.engine import make_url

            where = make_url(str(self.settings.database_url)).render_as_string(
                hide_password=True)  # a PostgreSQL URL may carry one
            raise ProfileError(f"unknown profile {self.profile!r}: no such profile in {where} "
                               "(profiles are made by the HTTP service's /adapt; 'default' is "
                               "the shipped model)") from None
        return Served(model, info.number, info.sha256, keywords(model))

    def refresh(self) -> Served:
        """The current model, looked up again if the last look is older than ``refresh_s``;
        on a failure (profile deleted, database busy) the last good one is kept."""
        with self.lock:
            if self.profile == DEFAULT_PROFILE or \
                    time.monotonic() - self.checked < self.refresh_s:
                return self.served
            try:
                new = self._resolve()
            except Exception as exc:  # keep serving what we have
                log.warning("profile %s: could not look it up again (%s); still serving "
                            "version %d", self.profile, exc, self.served.version)
                new = self.served
            if new.version != self.served.version or new.sha256 != self.served.sha256:
                log.info("profile %s: now serving version %d", self.profile, new.version)
            self.served, self.checked = new, time.monotonic()
            return new

    def close(self) -> None:
        if self.store is not None:
            self.store.engine.dispose()


class _Mono16k:
    """Any PCM (rate, width, channels) to 16 kHz 16-bit mono, with the ``wyoming`` converter;
    one per stream (the resampler keeps state between chunks)."""

    def __init__(self) -> None:
        self.width = AudioChunkConverter(width=2)
        self.rate = AudioChunkConverter(rate=SAMPLE_RATE)

    def __call__(self, chunk: AudioChunk) -> bytes:
        if (chunk.rate, chunk.width, chunk.channels) == (SAMPLE_RATE, 2, 1):
            return chunk.audio
        c = self.width.convert(chunk)
        if c.channels > 1:  # average the channels (the converter sums them: clipping)
            n = len(c.audio) // (2 * c.channels) * c.channels
            a = np.frombuffer(c.audio[: n * 2], dtype="<i2").reshape(-1, c.channels)
            mono = a.mean(axis=1).round().astype("<i2").tobytes()
            c = AudioChunk(c.rate, 2, 1, mono, c.timestamp)
        return self.rate.convert(c).audio


class WakeHandler(AsyncEventHandler):
    """One client connection: its own detector, format converter and ``detect`` filter."""

    def __init__(self, server: WyomingWake, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.server = server
        self.names: set[str] | None = None  # a detect event's restriction
        self.detector: Detector | None = None
        self.convert: _Mono16k | None = None
        self.detected = False
        self.last_timestamp: int | None = None

    async def run(self) -> None:
        """The library's loop, with bounded reads and an idle timeout."""
        try:
            while True:
                try:
                    event = await asyncio.wait_for(self._read_event(),
                                                   self.server.idle_timeout_s)
                except TimeoutError:
                    log.info("closing a connection idle for %g s", self.server.idle_timeout_s)
                    break
                except _Refused as exc:
                    await self._error(str(exc), "bad-event")
                    break
                if event is None or not await self.handle_event(event):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # a bug: this client gets an error, the others carry on
            log.exception("wyoming connection failed")
            await self._error(f"internal error: {type(exc).__name__}", "internal-error")
        finally:
            await self.disconnect()
            self.writer.close()

    async def _read_event(self) -> Event | None:
        try:
            line = await self.reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            raise _Refused(f"an event header is limited to {MAX_HEADER_BYTES} bytes") from None
        if not line:
            return None
        try:
            head = json.loads(line)
            etype = head["type"]
            data = head.get("data") or {}
            data_len = int(head.get("data_length") or 0)
            payload_len = int(head.get("payload_length") or 0)
        except (ValueError, KeyError, TypeError):
            raise _Refused("an event header must be a JSON object with a type") from None
        if not 0 <= data_len <= MAX_DATA_BYTES or \
                not 0 <= payload_len <= self.server.max_payload_bytes:
            raise _Refused(f"event data is limited to {MAX_DATA_BYTES} bytes and payloads to "
                           f"{self.server.max_payload_bytes}")
        if data_len:
            try:
                data = {**data, **json.loads(await self.reader.readexactly(data_len))}
            except (ValueError, TypeError):
                raise _Refused("event data must be a JSON object") from None
        payload = await self.reader.readexactly(payload_len) if payload_len else None
        return Event(type=etype, data=data, payload=payload)

    async def write_event(self, event: Event) -> None:
        await async_write_event(event, self.writer)

    async def _error(self, text: str, code: str) -> None:
        try:
            await self.write_event(Error(text=text, code=code).event())
        except ConnectionError:
            pass

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event(self.server.info().event())
            elif Detect.is_type(event.type):
                await self._detect(Detect.from_event(event))
            elif AudioStart.is_type(event.type):
                await self._start()
            elif AudioChunk.is_type(event.type):
                await self._chunk(AudioChunk.from_event(event))
            elif AudioStop.is_type(event.type):
                await self._stop()
            else:
                log.debug("ignored event %s", event.type)
        except (KeyError, TypeError, ValueError) as exc:
            await self._error(f"malformed {event.type} event: {exc}", "bad-event")
            return False
        return True

    async def _detect(self, detect: Detect) -> None:
        if not detect.names:
            self.names = None
            return
        known = self.server.served.keywords
        self.names = {n for n in detect.names if n in known}
        unknown = [n for n in detect.names if n not in known]
        if unknown:
            await self._error(f"unknown wake word(s) {unknown}; this service has {known}",
                              "unknown-wake-word")

    def _detector(self, served: Served) -> Detector:
        """The stream detector; keywords not asked for by ``detect`` get the threshold 1.0,
        which no posterior exceeds, so they never fire and never hide one that was asked
        for (the trigger picks the best keyword above its own threshold)."""
        off = {k: 1.0 for k in served.keywords if self.names is not None and k not in self.names}
        return Detector(served.model, threshold=self.server.threshold, thresholds=off)

    async def _start(self) -> None:
        self.detector = self._detector(await self.server.refreshed())
        self.convert = _Mono16k()
        self.detected = False

    async def _chunk(self, chunk: AudioChunk) -> None:
        if self.detector is None:  # audio without audio-start: start implicitly
            await self._start()
        pcm = self.convert(chunk)
        for d in await self.server.compute(self.detector.feed, pcm):
            self.detected = True
            ts = chunk.timestamp if chunk.timestamp is not None else round(d.time * 1000)
            log.info("detected %s (p=%.3f) at %.2f s", d.label, d.probability, d.time)
            await self.write_event(Detection(name=d.label, timestamp=ts).event())

    async def _stop(self) -> None:
        if not self.detected:
            await self.write_event(NotDetected().event())
        self.detector = self.convert = None
        self.detected = False


class _Refused(Exception):
    pass


class WyomingWake:
    """The server's shared parts: the profile's model, settings, the compute pool."""

    def __init__(self, source: ProfileSource, threshold: float, threads: int,
                 idle_timeout_s: float, max_payload_bytes: int) -> None:
        self.source, self.threshold = source, threshold
        self.idle_timeout_s, self.max_payload_bytes = idle_timeout_s, max_payload_bytes
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="tracekws-wyoming")

    @property
    def served(self) -> Served:
        return self.source.served

    async def refreshed(self) -> Served:
        return await asyncio.get_running_loop().run_in_executor(None, self.source.refresh)

    async def compute(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def info(self) -> Info:
        """One wake program whose models are the keywords of the profile's current model
        (no languages claimed, as wyoming-openwakeword does: a profile's own words may be in
        any language)."""
        s = self.served
        desc = f"tracekws profile {self.source.profile} (version {s.version})"
        return Info(wake=[WakeProgram(
            name=PROGRAM, description=f"Spiking-network keyword spotting, {desc}",
            attribution=ATTRIBUTION, installed=True, version=None,
            models=[WakeModel(name=k, description=k, phrase=k, attribution=DATA_ATTRIBUTION,
                              installed=True, languages=[], version=str(s.version))
                    for k in s.keywords])])

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                ) -> WakeHandler:
        return WakeHandler(self, reader, writer)

    async def run(self, uri: str) -> None:
        server = AsyncServer.from_uri(uri)  # header lines: asyncio's 64 KiB reader limit
        try:
            await server.run(self.handler)
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)


def serve(uri: str, profile: str, threshold: float | None = None, refresh_s: float = REFRESH_S
          ) -> int:
    """``tracekws wyoming``: resolve the profile (a clear error and exit status 2 if it cannot
    be served) and answer Wyoming clients until SIGTERM or Ctrl-C."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = Settings()
        source = ProfileSource(settings, profile, refresh_s)
    except ProfileError as exc:
        log.error("tracekws wyoming: %s", exc)
        return 2
    except ValueError as exc:  # settings that do not validate
        log.error("tracekws wyoming: invalid settings: %s", exc)
        return 2
    except Exception as exc:  # the database cannot be read (unreachable, locked, damaged)
        log.error("tracekws wyoming: cannot read profile %r: %s: %s", profile,
                  type(exc).__name__, exc)
        return 2
    torch.set_num_threads(settings.effective_torch_threads)
    th = threshold if threshold is not None else settings.stream_threshold
    if not 0.0 < th <= 1.0:
        log.error("tracekws wyoming: --threshold must be in (0, 1]")
        return 2
    wake = WyomingWake(source, th, settings.predict_pool_threads,
                       settings.stream_idle_timeout_s, settings.stream_max_message_bytes)
    s = source.served
    log.info("tracekws wyoming ready on %s: profile %s version %d, keywords %s, threshold %g",
             uri, profile, s.version, ",".join(s.keywords), th)
    try:
        asyncio.run(wake.run(uri))
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    return 0
