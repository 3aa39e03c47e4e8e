"""``tracekws listen``: live keyword detections from a microphone or an audio file.

A client-side command (no HTTP server involved): audio goes through
:class:`tracekws.model.detect.Detector`, the same streaming detector as the service's
WebSocket ``/stream``, with the same thresholds and refractory time (the profile version's
own detector settings, else its model's; :func:`tracekws.model.detect.detector_config`;
``--threshold`` and ``--refractory`` replace them), and each detection is

- printed on stdout, one per line: ``time<TAB>word<TAB>probability`` (``time``: seconds of
  audio since listening started), or a JSON object per line with ``--json``;
- optionally handed to a command (``--exec CMD``), run once per detection with
  ``TRACEKWS_WORD``, ``TRACEKWS_PROBABILITY`` and ``TRACEKWS_TIME`` in its environment. CMD is
  split like a shell would (``shlex``) and run without a shell, so a word can never be
  interpreted by one; ``--shell`` runs CMD through ``/bin/sh -c`` for users who want pipes or
  redirections (the variables are then ``$TRACEKWS_WORD`` etc.). The command's output goes to
  stderr, so stdout carries only detections;
- optionally POSTed as JSON to ``--webhook URL`` (or ``$TRACEKWS_ON_DETECT_URL``):
  ``{"type": "detection", "label", "probability", "time"}``, the shape of ``/stream``'s
  detection messages, with a short timeout.

Commands and webhooks run on one worker thread, in detection order, so a slow command or an
unreachable URL never stalls the audio (a microphone keeps delivering samples while they
run); a failing command or POST is reported on stderr and listening goes on.

The microphone is read through PortAudio (the ``sounddevice`` package, imported only when a
microphone is used, so ``--file`` works on machines without libportaudio2). A device that
cannot record at 16 kHz is opened at its own rate and resampled on the fly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tracekws.model.audio import SAMPLE_RATE, AudioError, load
from tracekws.model.detect import Detection, Detector, DetectorConfig, detector_config
from tracekws.model.detect import keywords as detector_keywords

log = logging.getLogger("tracekws.listen")

WEBHOOK_ENV = "TRACEKWS_ON_DETECT_URL"
CHUNK_SECONDS = 0.1  # audio per read: what a microphone delivers per callback, and file pacing
MAX_BACKLOG_SECONDS = 5.0  # microphone audio queued beyond this is dropped (detector too slow)
WARN_INTERVAL = 10.0  # seconds between two "falling behind" warnings


class ListenError(Exception):
    """A setup problem to report in one line (no PortAudio, no such device, bad file)."""


# ---- audio sources -------------------------------------------------------------------------
def file_chunks(path: str | Path, realtime: bool = True, chunk_seconds: float = CHUNK_SECONDS,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> Iterator[torch.Tensor]:
    """A file's 16 kHz samples in chunks; with ``realtime``, each chunk is released when its
    audio would have finished playing, so a file behaves like a microphone (and timings of
    commands and webhooks are those of live use)."""
    wave = load(path)
    n = max(1, round(chunk_seconds * SAMPLE_RATE))
    start = clock()
    for i in range(0, wave.numel(), n):
        chunk = wave[i : i + n]
        if realtime:
            due = start + (i + chunk.numel()) / SAMPLE_RATE
            delay = due - clock()
            if delay > 0:
                sleep(delay)
        yield chunk


def sounddevice_module() -> Any:
    """``sounddevice``, or a :class:`ListenError` saying what to install."""
    try:
        import sounddevice
    except OSError as exc:  # the package is there but libportaudio is not
        raise ListenError(
            f"PortAudio is not installed ({exc}). On Debian / Raspberry Pi OS: "
            "sudo apt-get install libportaudio2 (or use --file CLIP)") from None
    except ImportError:
        raise ListenError("the sounddevice package is missing: pip install sounddevice "
                          "(and libportaudio2 from apt), or use --file CLIP") from None
    return sounddevice


def _device(spec: str | None) -> int | str | None:
    """``--device``: an index (``2``) or part of a name (``USB``), as sounddevice takes them."""
    if spec is None or spec == "":
        return None
    return int(spec) if spec.strip().isdigit() else spec


def list_devices() -> str:
    """The input devices PortAudio sees, one per line: index, name, channels, default rate."""
    sd = sounddevice_module()
    lines = []
    try:
        default_in = sd.default.device[0]
        for i, d in enumerate(sd.query_devices()):
            if d["max_input_channels"] > 0:
                mark = "*" if i == default_in else " "
                lines.append(f"{mark}{i:3d}  {d['name']}  ({d['max_input_channels']} ch, "
                             f"{d['default_samplerate']:g} Hz)")
    except sd.PortAudioError as exc:
        raise ListenError(f"PortAudio: {exc}") from None
    return "\n".join(lines) if lines else "no input devices found"


def mic_chunks(device: str | None = None, chunk_seconds: float = CHUNK_SECONDS,
               stop: threading.Event | None = None) -> Iterator[torch.Tensor]:
    """16 kHz mono float chunks from a microphone until ``stop`` is set (or Ctrl-C)."""
    from tracekws.model.stream_decode import StreamResampler

    sd = sounddevice_module()
    dev = _device(device)
    try:
        info = sd.query_devices(dev, "input")
        rate = SAMPLE_RATE
        try:
            sd.check_input_settings(device=dev, channels=1, dtype="float32", samplerate=rate)
        except sd.PortAudioError:  # e.g. a USB microphone that only records at 48 kHz
            rate = int(info["default_samplerate"])
        resampler = StreamResampler(rate)
        q: queue.Queue = queue.Queue()
        max_blocks = max(1, round(MAX_BACKLOG_SECONDS / chunk_seconds))
        dropped = [0]

        def callback(indata, frames, t, status) -> None:  # PortAudio's thread: no torch here
            if q.qsize() >= max_blocks:
                dropped[0] += frames
                return
            q.put(indata[:, 0].copy())

        stream = sd.InputStream(device=dev, channels=1, dtype="float32", samplerate=rate,
                                blocksize=max(1, round(chunk_seconds * rate)),
                                callback=callback)
    except (sd.PortAudioError, ValueError) as exc:
        raise ListenError(f"cannot open input device {device or '(default)'}: {exc}") from None
    print(f"listening on {info['name']} at {rate} Hz"
          + (" (resampled to 16 kHz)" if rate != SAMPLE_RATE else "") + "; Ctrl-C stops",
          file=sys.stderr, flush=True)
    warned = 0.0
    with stream:
        while stop is None or not stop.is_set():
            try:
                block = q.get(timeout=0.5)
            except queue.Empty:
                continue
            if dropped[0] and time.monotonic() - warned >= WARN_INTERVAL:
                log.warning("detector falling behind: dropped %.1f s of audio",
                            dropped[0] / rate)
                dropped[0], warned = 0, time.monotonic()
            out = resampler.feed(torch.from_numpy(block))
            if out.numel():
                yield out


# ---- what happens on a detection -----------------------------------------------------------
@dataclass(frozen=True)
class Actions:
    """What to do with a detection besides printing it."""

    command: str | None = None
    shell: bool = False
    command_timeout: float = 30.0
    webhook: str | None = None
    webhook_timeout: float = 2.0

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.webhook)


def detection_env(d: Detection) -> dict[str, str]:
    """The variables a command sees for a detection."""
    return {"TRACEKWS_WORD": d.label, "TRACEKWS_PROBABILITY": f"{d.probability:.4f}",
            "TRACEKWS_TIME": f"{d.time:.3f}"}


def _stderr() -> int | None:
    """Our stderr's descriptor for a child's stdout (None: inherit, where it has none)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def run_command(actions: Actions, d: Detection) -> bool:
    """Run the user's command for one detection; False (and a message on stderr) if it could
    not start, failed or timed out."""
    assert actions.command
    env = os.environ | detection_env(d)
    args: str | list[str] = actions.command if actions.shell else shlex.split(actions.command)
    try:
        # the command's output goes to stderr: stdout carries only detections (for pipes)
        r = subprocess.run(args, shell=actions.shell, env=env, stdin=subprocess.DEVNULL,
                           stdout=_stderr(), timeout=actions.command_timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"tracekws listen: command timed out after {actions.command_timeout:g} s "
              f"({d.label})", file=sys.stderr, flush=True)
        return False
    except OSError as exc:  # not found, not executable
        print(f"tracekws listen: command failed to start: {exc}", file=sys.stderr, flush=True)
        return False
    if r.returncode != 0:
        print(f"tracekws listen: command exited with status {r.returncode} ({d.label})",
              file=sys.stderr, flush=True)
        return False
    return True


def post_webhook(client: Any, url: str, d: Detection) -> bool:
    """POST one detection; False (and a logged warning) on any failure."""
    import httpx

    try:
        r = client.post(url, json={"type": "detection", **d.to_dict()})
        r.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("webhook %s failed: %s", url, exc)
        return False
    return True


class ActionWorker:
    """Runs :class:`Actions` for detections on one background thread, in order."""

    def __init__(self, actions: Actions) -> None:
        self.actions = actions
        self.queue: queue.Queue[Detection | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="tracekws-listen-actions",
                                       daemon=True)
        self.thread.start()

    def submit(self, d: Detection) -> None:
        self.queue.put(d)

    def close(self, timeout: float | None = None) -> None:
        """Finish the detections already queued, then stop."""
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        import httpx

        a = self.actions
        client = httpx.Client(timeout=a.webhook_timeout) if a.webhook else None
        try:
            while (d := self.queue.get()) is not None:
                if a.command:
                    run_command(a, d)
                if client is not None and a.webhook:
                    post_webhook(client, a.webhook, d)
        finally:
            if client is not None:
                client.close()


def format_detection(d: Detection, as_json: bool = False) -> str:
    if as_json:
        return json.dumps({"type": "detection", **d.to_dict()})
    return f"{d.time:.2f}\t{d.label}\t{d.probability:.3f}"


def listen(chunks: Iterator[torch.Tensor], detector: Detector, actions: Actions | None = None,
           out: Callable[[Detection], None] | None = None) -> list[Detection]:
    """Feed ``chunks`` to ``detector``; print/act on each detection; return them all."""
    worker = ActionWorker(actions) if actions is not None and actions.enabled else None
    found: list[Detection] = []
    try:
        def heard(ds: list[Detection]) -> None:
            for d in ds:
                found.append(d)
                if out is not None:
                    out(d)
                if worker is not None:
                    worker.submit(d)

        for chunk in chunks:
            heard(detector.feed(chunk))
        heard(detector.flush())  # the end of a file: a word of the user's own said last
    finally:
        if worker is not None:
            worker.close()
    return found


# ---- command line --------------------------------------------------------------------------
def _threshold(text: str) -> float:
    v = float(text)
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError("threshold must be in (0, 1]")
    return v


def _seconds(text: str) -> float:
    v = float(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be ≥ 0")
    return v


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``listen`` under the given subparsers (``tracekws listen``)."""
    p = subparsers.add_parser(
        "listen", help="live keyword detections from a microphone or a file",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--file", help="audio file to stream instead of the microphone "
                                  "(WAV, FLAC, OGG; any rate 8-48 kHz)")
    p.add_argument("--fast", action="store_true",
                   help="with --file: as fast as possible instead of in real time")
    p.add_argument("--device", help="microphone: index or part of the name "
                                    "(see --list-devices; default: the system's)")
    p.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="model file (default: the shipped model)")
    which.add_argument("--profile",
                       help="listen with a profile's active version, read from the service's "
                            "database (TRACEKWS_DATA_DIR / TRACEKWS_DATABASE_URL, read-only)")
    p.add_argument("--threshold", type=_threshold, default=None,
                   help="smoothed posterior every keyword must exceed (default: the "
                        "per-keyword thresholds of the profile version or model, else "
                        f"{DetectorConfig().threshold:g})")
    p.add_argument("--refractory", type=_seconds, default=None,
                   help="seconds a detected word stays suppressed (default: the profile "
                        f"version's or model's, else {DetectorConfig().refractory:g})")
    p.add_argument("--exec", dest="command", metavar="CMD",
                   help="run CMD once per detection, with TRACEKWS_WORD, TRACEKWS_PROBABILITY "
                        "and TRACEKWS_TIME in its environment (no shell unless --shell)")
    p.add_argument("--shell", action="store_true", help="run --exec CMD through /bin/sh -c")
    p.add_argument("--exec-timeout", type=_seconds, default=30.0,
                   help="seconds before a command is killed (default %(default)s)")
    p.add_argument("--webhook", metavar="URL",
                   help=f"POST each detection as JSON to URL (default: ${WEBHOOK_ENV})")
    p.add_argument("--webhook-timeout", type=_seconds, default=2.0,
                   help="seconds per POST (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.set_defaults(func=run)
    return p


def _stop_on_sigterm() -> None:
    """SIGTERM (docker stop, systemd) ends listening like Ctrl-C, with queued actions run."""
    if threading.current_thread() is threading.main_thread():
        def handler(signum: int, frame: object) -> None:
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, handler)


def run(a: argparse.Namespace) -> int:
    """Entry point of ``tracekws listen``; exit status 0, or 1 with a one-line error."""
    logging.basicConfig(level=logging.INFO, format="tracekws listen: %(message)s")
    try:
        if a.list_devices:
            print(list_devices())
            return 0
        webhook = a.webhook or os.environ.get(WEBHOOK_ENV) or None
        if webhook and not webhook.startswith(("http://", "https://")):
            raise ListenError(f"webhook URL must start with http:// or https://: {webhook}")
        if a.shell and not a.command:
            raise ListenError("--shell needs --exec CMD")
        if a.command and not a.shell:
            try:
                if not shlex.split(a.command):
                    raise ListenError("--exec: empty command")
            except ValueError as exc:
                raise ListenError(f"--exec: {exc}") from None
        if not a.file:
            sounddevice_module()  # before the model loads: a missing PortAudio fails at once
        from tracekws.model.pipeline import PRETRAINED, KWSModel

        torch.set_num_threads(max(1, a.threads))
        if a.profile:  # read-only, as the Wyoming server reads it
            from .profiles import ProfileError, ProfileSource
            from .settings import Settings

            try:
                served = ProfileSource(Settings(), a.profile).served
            except ProfileError as exc:
                raise ListenError(str(exc)) from None
            model, own = served.model, served.detector
            logging.getLogger(__name__).info("profile %s version %d", a.profile, served.version)
        else:
            model, own = KWSModel.load(a.model or PRETRAINED), None
        cfg = detector_config(model, own, DetectorConfig(),
                              a.threshold, a.refractory).config
        log.info("thresholds %s, refractory %g s", ",".join(
            f"{k}={cfg.thresholds.get(k, cfg.threshold):g}"
            for k in detector_keywords(model.labels)), cfg.refractory)
        if model.enrolled_words():
            log.info("words of the profile's own: %s (heard once each utterance ends)",
                     ", ".join(model.enrolled_words()))
        detector = Detector(model, cfg)
        actions = Actions(command=a.command, shell=a.shell, command_timeout=a.exec_timeout,
                          webhook=webhook, webhook_timeout=a.webhook_timeout)
        if a.file:
            chunks = file_chunks(a.file, realtime=not a.fast)
        else:
            chunks = mic_chunks(a.device)
        _stop_on_sigterm()

        def show(d: Detection) -> None:
            print(format_detection(d, a.json), flush=True)

        listen(chunks, detector, actions, show)
    except AudioError as exc:
        print(f"tracekws listen: {a.file}: {exc}", file=sys.stderr)
        return 1
    except ListenError as exc:
        print(f"tracekws listen: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:  # --model
        print(f"tracekws listen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
