"""Home Assistant's wake word over the Wyoming protocol: ``tracekws wyoming``.

Home Assistant (and any Wyoming client: a satellite, a script) connects over TCP and speaks
newline-delimited JSON events:

- ``describe`` → ``info`` with one wake program, ``tracekws``, whose models are the
  profile's keywords (its labels but ``_unknown_`` and ``_silence_``) and its words of its own
  (enrolled through ``/adapt``; heard per utterance, so reported once the speech has ended, or
  at ``audio-stop`` if the stream stops first);
- ``detect`` (optional, before ``audio-start``) → only the named keywords are reported in
  the streams that follow, until the next ``detect`` (an empty or absent list: all); unknown
  names get an ``error`` event;
- ``audio-start``, ``audio-chunk``…, ``audio-stop`` → a ``detection`` event (``name``: the
  keyword) each time a keyword is heard, and ``not-detected`` at ``audio-stop`` if none was.
  The connection stays open: a client may start another stream on it.

Detection is the service's own streaming detector (:class:`tracekws.model.detect.Detector`,
the one behind the WebSocket ``/stream``), one per connection, with the thresholds and
refractory time ``/stream`` would use for the version (its own detector settings, else its
model's, else ``TRACEKWS_STREAM_THRESHOLD``: :func:`tracekws.model.detect.detector_config`;
``--threshold`` replaces the per-keyword thresholds with one for every keyword), fed
16 kHz 16-bit mono PCM; other rates, widths and channel counts are converted first with the
``wyoming`` package's audio utilities (stereo is averaged rather than summed, so it never
clips). A detection's ``timestamp`` is the ``timestamp`` of the audio chunk that completed the
keyword when the client sent one (Home Assistant does: it is how it finds its place in its
own audio), else the milliseconds of audio since ``audio-start`` at the end of the detecting
frame.

The profile's model is resolved read-only (:class:`service.profiles.ProfileSource`, which `tracekws
listen --profile` shares) from the same settings, database and shipped model
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from tracekws.model.audio import SAMPLE_RATE
from tracekws.model.detect import Detector, DetectorConfig
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Attribution, Describe, Info, WakeModel, WakeProgram
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.wake import Detect, Detection, NotDetected

from .profiles import REFRESH_S, ProfileError, ProfileSource, Served, service_detector
from .settings import Settings

log = logging.getLogger("tracekws.wyoming")

PROGRAM = "tracekws"
ATTRIBUTION = Attribution(name="tracekws", url="")  # no public home page to point at
# the shipped model learnt its words from this data set (pretrained/MODEL_CARD.md)
DATA_ATTRIBUTION = Attribution(name="Speech Commands data set by Google, CC BY 4.0",
                               url="https://arxiv.org/abs/1804.03209")
MAX_HEADER_BYTES = 64 * 1024  # one event's JSON line
MAX_DATA_BYTES = 64 * 1024  # its extra JSON data
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
        known = wake_names(self.server.served)
        self.names = {n for n in detect.names if n in known}
        unknown = [n for n in detect.names if n not in known]
        if unknown:
            await self._error(f"unknown wake word(s) {unknown}; this service has {known}",
                              "unknown-wake-word")

    def _detector(self, served: Served) -> Detector:
        """The stream detector, with the version's resolved thresholds; keywords not asked for
        by ``detect`` get the threshold 1.0, which no posterior exceeds, so they never fire
        and never hide one that was asked for (the trigger picks the best keyword above its
        own threshold)."""
        cfg = self.server.detector_config(served)
        off = {k: 1.0 for k in served.keywords if self.names is not None and k not in self.names}
        words = None if self.names is None else tuple(
            w for w in served.model.enrolled_words() if w in self.names)
        return Detector(served.model, replace(cfg, thresholds={**cfg.thresholds, **off},
                                              words=words))

    async def _start(self) -> None:
        self.detector = self._detector(await self.server.refreshed())
        self.convert = _Mono16k()
        self.detected = False

    async def _chunk(self, chunk: AudioChunk) -> None:
        if self.detector is None:  # audio without audio-start: start implicitly
            await self._start()
        pcm = self.convert(chunk)
        await self._report(await self.server.compute(self.detector.feed, pcm), chunk.timestamp)

    async def _report(self, found: list, timestamp: int | None = None) -> None:
        for d in found:
            self.detected = True
            ts = timestamp if timestamp is not None else round(d.time * 1000)
            log.info("detected %s (p=%.3f) at %.2f s", d.label, d.probability, d.time)
            await self.write_event(Detection(name=d.label, timestamp=ts).event())

    async def _stop(self) -> None:
        if self.detector is not None:  # a word of the user's own said just before the stop
            await self._report(await self.server.compute(self.detector.flush))
        if not self.detected:
            await self.write_event(NotDetected().event())
        self.detector = self.convert = None
        self.detected = False


def wake_names(served: Served) -> list[str]:
    """What a client can wake on: the profile's keywords and its words of its own."""
    return [*served.keywords, *served.model.enrolled_words()]


class _Refused(Exception):
    pass


class WyomingWake:
    """The server's shared parts: the profile's model, settings, the compute pool."""

    def __init__(self, source: ProfileSource, defaults: DetectorConfig,
                 threshold: float | None, threads: int, idle_timeout_s: float,
                 max_payload_bytes: int) -> None:
        self.source, self.defaults, self.threshold = source, defaults, threshold
        self.idle_timeout_s, self.max_payload_bytes = idle_timeout_s, max_payload_bytes
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="tracekws-wyoming")

    @property
    def served(self) -> Served:
        return self.source.served

    def detector_config(self, served: Served) -> DetectorConfig:
        """What ``served`` is heard with: the version's settings, else its model's, else the
        service's defaults; ``--threshold`` (if given) for every keyword."""
        return served.detector_choice(self.defaults, self.threshold).config

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
                    for k in wake_names(s)])])

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
    if threshold is not None and not 0.0 < threshold <= 1.0:
        log.error("tracekws wyoming: --threshold must be in (0, 1]")
        return 2
    wake = WyomingWake(source, service_detector(settings), threshold,
                       settings.predict_pool_threads, settings.stream_idle_timeout_s,
                       settings.stream_max_message_bytes)
    s = source.served
    cfg = wake.detector_config(s)
    log.info("tracekws wyoming ready on %s: profile %s version %d, thresholds %s, "
             "refractory %g s", uri, profile, s.version,
             ",".join(f"{k}={cfg.thresholds.get(k, cfg.threshold):g}" for k in s.keywords),
             cfg.refractory)
    try:
        asyncio.run(wake.run(uri))
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    return 0
