"""What a profile is, in one place: the routes ask, this module decides.

- ``default`` is the shipped model: one read-only version, never stored. Every other name is
  a stored profile whose versions form a lineage (MLflow-style: immutable versions, one
  mutable "active" pointer).
- Resolving a profile to the model to serve, with the corrupt-version fallback: a corrupt
  active version is skipped for its nearest good ancestor, so a profile keeps serving.
- Adapting: which rule and hyper-parameters apply (the request's, else the profile's rule,
  else the service's), the per-profile lock, the streaming job (decode → learn as the bytes
  arrive), and the one commit that makes the new version (or the replay of a retried one).
- Detection settings: which per-keyword thresholds and refractory time a version is heard
  with (:func:`~tracekws.model.detect.detector_config`, the one resolution /stream,
  ``tracekws wyoming`` and ``tracekws listen`` share, fed the version's own settings and the
  service's defaults), and setting them, which makes a new version.
- Words of the user's own (``model/words.py``): which a version has, with their thresholds and
  recordings, and changing one word's threshold or dropping the word, each a new version.
  A word's threshold lives in the model file's word book, so such a version has weights of its
  own (the same network, another book); older versions keep the word as it was.

Routes stay thin: they parse the request, call :class:`Profiles`, and shape the response.
Errors are raised as the store's exceptions or :class:`~.problems.Problem`; problems.py maps
them to HTTP in one place.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from starlette.requests import HTTPConnection
from tracekws.model.adapt import AdaptResult, AdaptSession
from tracekws.model.detect import (
    DetectorChoice,
    DetectorConfig,
    DetectorSettings,
    DetectorSettingsError,
    detector_config,
    keywords,
)
from tracekws.model.pipeline import KWSModel
from tracekws.model.rules import check_hyperparameters
from tracekws.model.stream_decode import StreamDecoder
from tracekws.model.words import MAX_THRESHOLD, WordBook, WordConfig

from .problems import Problem, disk_full_reason
from .runtime import Runtime
from .settings import DEFAULT_PROFILE, PROFILE_RE, Settings
from .store import (
    WORD_REMOVED_RULE,
    WORD_THRESHOLD_RULE,
    CorruptWeights,
    IdempotentReplay,
    ProfileInfo,
    Store,
    UnknownProfile,
    UnknownVersion,
    VersionInfo,
    sha256,
)

log = logging.getLogger("tracekws.service")


def is_reserved(name: str) -> bool:
    """``default`` in any case form (``DEFAULT``, ``Default``...): no stored profile may take
    it, and none of its forms can be written to."""
    return name.casefold() == DEFAULT_PROFILE


@dataclass(frozen=True)
class Resolved:
    model: KWSModel
    info: VersionInfo
    fallback_from: int | None = None  # the active version, when it was corrupt


def service_detector(settings: Settings) -> DetectorConfig:
    """The detector when neither the version nor its model says otherwise: the detector's
    defaults with the service's global threshold (``TRACEKWS_STREAM_THRESHOLD``)."""
    return DetectorConfig(threshold=settings.stream_threshold)


@dataclass(frozen=True)
class Adapted:
    """A finished adaptation: the committed version (``replayed``: a retry's earlier one)."""

    info: VersionInfo
    parent: int | None
    result: AdaptResult | None = None
    audio_seconds: float = 0.0
    replayed: bool = False


# docs/enrol.md measured words enrolled from 1, 3 and 5 recordings; 3 is the most with a
# measurement (80 % of later repetitions detected, 1.4 % of the speaker's other words taken, in
# a quiet room; 5 had no speaker to measure), so it is what the page asks a user for
RECOMMENDED_RECORDINGS = 3


def words_public(name: str, number: int, book: WordBook | None) -> dict[str, Any]:
    """Version ``number`` of ``name``'s words of the user's own as JSON: each word's threshold
    and recordings, and what a client needs to guide an enrolment and to offer a threshold
    (the tuned default, the largest allowed, how many recordings to ask for, how many are
    kept). ``enrols_words`` false: the model file has no word bank, so a label its classes
    lack grows the classifier instead (and nothing is listed here)."""
    cfg = book.cfg if book is not None else WordConfig()
    words = [] if book is None else [
        {"word": w, "threshold": book.thresholds[w], "recordings": len(r)}
        for w, r in book.words.items()]
    return {"profile": name, "version": number, "enrols_words": book is not None,
            "words": words, "default_threshold": cfg.threshold, "max_threshold": MAX_THRESHOLD,
            "recommended_recordings": RECOMMENDED_RECORDINGS,
            "max_recordings": cfg.max_templates}


class _WordChange(NamedTuple):
    """A change of one word: the new book, and how the version that carries it records it."""

    book: WordBook
    rule: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]


def _clear_stale_spool(spool: Path) -> None:
    """Spool files no request holds open any more (orphans of killed requests)."""
    for f in spool.glob("*"):
        try:
            if f.is_file() and time.time() - f.stat().st_mtime > 600:
                f.unlink(missing_ok=True)
        except OSError:
            pass


def nearest_good(info: VersionInfo, version: Callable[[int], VersionInfo],
                 load: Callable[[VersionInfo], KWSModel]) -> tuple[KWSModel, VersionInfo]:
    """The model of ``info``, or of its nearest ancestor whose weights are not corrupt
    (``version(n)``: the profile's version n). Raises CorruptWeights when none is good."""
    cur = info
    while True:
        try:
            return load(cur), cur
        except CorruptWeights:
            if cur.parent is None:
                raise CorruptWeights(info.profile, info.number, info.sha256,
                                     "no good ancestor") from None
            cur = version(cur.parent)


class _Job:
    """One adaptation: decoder + session (+ optional raw-audio spool). Touched by one worker
    thread at a time (each step is awaited before the next).

    Decoded audio is learned ``slice_samples`` at a time and, between two slices, the thread
    calls ``pause()`` (the prediction gate: it waits, bounded, while predictions are pending),
    so a long upload chunk does not hold the GIL against /predict for its whole duration."""

    def __init__(self, model: KWSModel, label: str, rule: str, hp: dict, max_seconds: float,
                 spool_dir: str, keep_audio: bool, slice_samples: int = 4000,
                 pause: Callable[[], None] = lambda: None) -> None:
        self.slice, self.pause = max(1, slice_samples), pause
        self.session = AdaptSession(model.clone(), label, rule, **hp)
        self.decoder = StreamDecoder(max_seconds=max_seconds, spool_dir=spool_dir)
        self.raw = None
        if keep_audio:
            self.raw = tempfile.NamedTemporaryFile(dir=spool_dir, delete=False)  # noqa: SIM115

    def feed(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw.write(data)
        self._learn(self.decoder.feed(data))

    def _learn(self, samples) -> None:
        for i in range(0, samples.numel(), self.slice):
            if i:
                self.pause()
            self.session.feed(samples[i : i + self.slice])

    def finish(self) -> tuple[AdaptResult, bytes]:
        for block in self.decoder.close_blocks():
            if block.numel():
                self.pause()
                self._learn(block)
        self.pause()
        result = self.session.finish()
        return result, self.session.model.to_bytes()

    def abort(self) -> None:
        self.decoder.abort()
        if self.raw is not None:
            self.raw.close()
            os.unlink(self.raw.name)
            self.raw = None

    def keep_raw(self, dest: Path) -> str | None:
        if self.raw is None:
            return None
        self.raw.close()
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.raw.name, dest)
        self.raw = None
        return str(dest)


class Profiles:
    """Profiles over the runtime's store, model cache and locks (one per app)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # ---- reading ------------------------------------------------------------------------
    def default_public(self) -> dict[str, Any]:
        return {"name": DEFAULT_PROFILE, "created_at": self.rt.base_info.created_at.isoformat(),
                "store_audio": False, "active_version": 1, "versions": 1, "rule": None,
                "read_only": True}

    async def list(self) -> list[dict[str, Any]]:
        rt = self.rt
        return [self.default_public()] + [p.public() for p in await rt.io(rt.store.list_profiles)]

    async def get(self, name: str) -> dict[str, Any]:
        """A profile's JSON, with ``detector``: what its active version is heard with (null
        when no version's weights can be loaded; the detector route then answers 409)."""
        out = self.default_public() if name == DEFAULT_PROFILE else \
            (await self.rt.io(self.rt.store.get_profile, name)).public()
        try:
            out["detector"] = await self.detector(name)
        except CorruptWeights:
            out["detector"] = None
        return out

    def detector_choice(self, resolved: Resolved, threshold: float | None = None
                        ) -> DetectorChoice:
        """The detector a resolved version is heard with on this service (``threshold``: a
        connection's own global threshold)."""
        return detector_config(resolved.model, resolved.info.detector,
                               service_detector(self.rt.settings), threshold)

    async def detector(self, name: str, number: int | None = None) -> dict[str, Any]:
        """The detector settings a version (default: the one /stream serves) is heard with,
        as JSON, with the version's number and its own settings (``own``; null: none)."""
        resolved = await self.rt.io(self.resolve, name, number)
        return {"version": resolved.info.number, "own": resolved.info.detector,
                **self.detector_choice(resolved).public(resolved.model.labels)}

    async def set_detector(self, name: str, data: object) -> tuple[dict[str, Any], bool]:
        """Make ``data`` (``{"thresholds": {keyword: t}, "refractory": s}``, either part
        optional) the detector settings of a new active version with the active version's
        weights; (the profile's new detector JSON, whether a version was made: setting what
        the active version already has makes none). Held under the profile's lock, so it
        waits for a running adaptation instead of making it fail with a conflict; checked
        against the active version's keywords (422 ``validation-error`` naming each bad
        field). Corrupt weights of the active version are 409 and nothing is made: like a
        rollback, it never makes a corrupt version active."""
        rt = self.rt
        async with self._changing(name) as active:
            try:
                settings = DetectorSettings.parse(data, keywords(active.labels))
            except DetectorSettingsError as exc:
                raise Problem("validation-error", str(exc), errors=[
                    {"loc": ["body", *loc], "msg": msg, "type": "value_error"}
                    for loc, msg in exc.errors]) from None
            await rt.io(self.load, active)  # CorruptWeights: the same blob would be served
            info, created = await rt.write(rt.store.commit_detector, name, active.number,
                                           settings.to_dict())
        return await self.detector(name, info.number), created

    @asynccontextmanager
    async def _changing(self, name: str) -> AsyncIterator[VersionInfo]:
        """The active version of ``name``, under the profile's lock: where a change of a
        version's settings (detector, words) starts. The lock makes it wait for a running
        adaptation instead of failing with a conflict; the commit still checks that this
        version is the active one (another process on the same SQLite file: 409)."""
        self.check_writable(name)
        async with self.rt.lock(name):
            yield await self.rt.io(self.rt.store.version, name)

    # ---- words of the user's own ----------------------------------------------------------
    async def words(self, name: str) -> dict[str, Any]:
        """The words of the version /predict serves (the active one, or its nearest good
        ancestor when its weights are corrupt), as :func:`words_public`."""
        resolved = await self.rt.io(self.resolve, name)
        return words_public(name, resolved.info.number, resolved.model.words)

    async def set_word_threshold(self, name: str, word: str, threshold: float
                                 ) -> tuple[dict[str, Any], bool]:
        """A new active version in which ``word`` fires below ``threshold``; (its words as
        JSON, whether a version was made: the threshold the word already has makes none, so
        a retried PUT adds nothing)."""
        def change(book: WordBook) -> _WordChange | None:
            before = book.thresholds[word]
            if before == threshold:
                return None
            try:
                new = book.with_threshold(word, threshold)
            except ValueError as exc:  # the model's own check, should the route's differ
                raise Problem("validation-error", str(exc), errors=[
                    {"loc": ["body", "threshold"], "msg": str(exc), "type": "value_error"}]
                ) from None
            return _WordChange(new, WORD_THRESHOLD_RULE, {"threshold": threshold},
                               {"threshold_before": before, "threshold_after": threshold})

        return await self._change_word(name, word, change)

    async def remove_word(self, name: str, word: str) -> dict[str, Any]:
        """A new active version without ``word``: /predict no longer answers it. Versions are
        immutable, so the older ones keep it and a rollback brings it back."""
        body, _ = await self._change_word(name, word, lambda book: _WordChange(
            book.without(word), WORD_REMOVED_RULE, {},
            {"threshold_before": book.thresholds[word]}))
        return body

    async def _change_word(self, name: str, word: str,
                           change: Callable[[WordBook], _WordChange | None]
                           ) -> tuple[dict[str, Any], bool]:
        """Apply ``change`` to the active version's word book (None: nothing to change) and
        commit the result as a new active version: its parent's network and detector
        settings, ``label`` the word, ``rule`` and records from the change. 404
        ``unknown-word`` if the active version lacks the word; corrupt weights are 409 and
        nothing is made (as for a rollback)."""
        rt = self.rt
        async with self._changing(name) as active:
            book = (await rt.io(self.load, active)).words
            if book is None or word not in book.words:
                known = ", ".join(repr(w) for w in book.words) if book is not None else ""
                raise Problem("unknown-word", f"version {active.number} of {name!r} has no "
                              f"word {word!r} of the user's own"
                              + (f" (it has {known})" if known else " (it has none)"))
            made = change(book)
            if made is None:
                return words_public(name, active.number, book), False
            weights = await rt.io(self._weights_with, active, made.book)
            info = await rt.write(
                rt.store.commit_version, name, active.number, weights, made.rule, word,
                made.hyperparameters, 0, list(active.labels),
                {**made.metrics, "recordings": len(book.words[word])},
                detector=active.detector)
        return words_public(name, info.number, made.book), True

    def _weights_with(self, info: VersionInfo, book: WordBook) -> bytes:
        """The weights file of ``info`` with ``book`` as its words (blocking). Built from the
        stored bytes, not the cached model, so a model other requests are using is never
        touched."""
        model = KWSModel.from_bytes(self.rt.store.weights(info))
        model.words = book
        return model.to_bytes()

    def version_info(self, name: str, number: int | None = None) -> VersionInfo:
        """A version's record (blocking: call through ``rt.io``); None = the active one."""
        if name == DEFAULT_PROFILE:
            if number not in (None, 1):
                raise UnknownVersion(f"{DEFAULT_PROFILE} has only version 1")
            return self.rt.base_info
        return self.rt.store.version(name, number)

    async def versions(self, name: str) -> tuple[list[VersionInfo], int]:
        if name == DEFAULT_PROFILE:
            return [self.rt.base_info], 1
        return await self.rt.io(self.rt.store.versions, name)

    async def version(self, name: str, number: int) -> tuple[VersionInfo, int]:
        """(the version, the number of the active one)."""
        info = await self.rt.io(self.version_info, name, number)
        active = 1 if name == DEFAULT_PROFILE else \
            (await self.rt.io(self.version_info, name)).number
        return info, active

    async def weights(self, info: VersionInfo) -> bytes:
        if info.profile == DEFAULT_PROFILE:
            return self.rt.base_bytes
        try:
            return await self.rt.io(self.rt.store.weights, info)
        except CorruptWeights:
            self.rt.metrics.inc("tracekws_corrupt_weights_total")
            raise

    def load(self, info: VersionInfo) -> KWSModel:
        """The model of one version (cached by sha256, checked on load; blocking)."""
        rt = self.rt
        if info.profile == DEFAULT_PROFILE or info.sha256 == rt.base_sha:
            return rt.base_model

        def _load() -> KWSModel:
            m = KWSModel.from_bytes(rt.store.weights(info))
            m.net.eval()
            return m

        try:
            return rt.cache.get(info.sha256, _load)
        except CorruptWeights:
            rt.metrics.inc("tracekws_corrupt_weights_total")
            log.error("corrupt weights: profile %s version %s", info.profile, info.number)
            raise

    def resolve(self, name: str, number: int | None = None) -> Resolved:
        """The model to serve (blocking). With no version asked for, a corrupt active version
        falls back to its nearest good ancestor, so the profile keeps serving its last good
        version."""
        info = self.version_info(name, number)
        if number is not None:  # a version asked for by number: that one or an error
            return Resolved(self.load(info), info)
        model, good = nearest_good(info, lambda n: self.rt.store.version(name, n), self.load)
        return Resolved(model, good, None if good is info else info.number)

    # ---- writing ------------------------------------------------------------------------
    @staticmethod
    def check_writable(name: str) -> None:
        if is_reserved(name):
            raise Problem("read-only-profile")

    async def create(self, name: str, store_audio: bool, rule: str | None) -> ProfileInfo:
        if is_reserved(name):
            raise Problem("profile-exists", f"{name!r} is reserved: 'default' is the built-in "
                          "profile")
        return await self.rt.write(self.rt.store.create_profile, name, store_audio, rule)

    async def activate(self, name: str, number: int) -> tuple[int, VersionInfo]:
        self.check_writable(name)
        return await self.rt.write(self.rt.store.activate, name, number)

    async def delete(self, name: str) -> None:
        """Delete a profile, its versions and its recordings. On a full disk, deleting is how
        space is freed, so it must work there: the profile's recordings and stale spool files
        go first, then the rows are deleted again."""
        import shutil

        self.check_writable(name)
        rt = self.rt
        audio = rt.settings.audio_dir / name
        async with rt.lock(name):
            try:
                await rt.write(rt.store.delete_profile, name)
            except Exception as exc:
                if disk_full_reason(exc) is None:
                    raise
                await rt.io(_clear_stale_spool, rt.settings.spool_dir)
                await rt.io(shutil.rmtree, audio, True)
                await rt.write(rt.store.delete_profile, name)
            if audio.is_dir():
                await rt.io(shutil.rmtree, audio, True)

    def hyperparameters(self, rule: str | None, given: dict[str, Any]
                        ) -> tuple[str, dict[str, Any]]:
        """The rule and hyper-parameters of one adaptation: the request's values over the
        service's configured ones (those apply to the service's rule only); validated."""
        s = self.rt.settings
        rule = rule or s.adapt_rule
        hp = dict(s.adapt_hyperparameters) if rule == s.adapt_rule else {}
        hp.update({k: v for k, v in given.items() if v is not None})
        try:
            check_hyperparameters(rule, hp)
        except ValueError as exc:
            raise Problem("validation-error", str(exc)) from None
        return rule, hp

    async def replayed(self, name: str, key: str | None) -> VersionInfo | None:
        """The version an earlier call with this Idempotency-Key made, if any."""
        if key is None:
            return None
        return await self.rt.io(self.rt.store.by_idempotency_key, name, key)

    async def adapt(self, name: str, label: str, rule: str | None, given: dict[str, Any],
                    chunks: AsyncIterator[bytes], key: str | None = None) -> Adapted:
        """Learn ``label`` from the audio in ``chunks`` as it arrives and commit exactly one new
        version (a profile that does not exist yet is created from the shipped model).

        Adaptations of one profile are serialized by :meth:`Runtime.lock`, held from the first
        body byte to the commit; the commit checks in one write transaction that the version
        the adaptation started from is still the active one (else 409 ``version-conflict``)."""
        rt, s = self.rt, self.rt.settings
        self.check_writable(name)
        done = await self.replayed(name, key)  # a retry: answer before reading the body
        if done is not None:
            return Adapted(done, done.parent, replayed=True)
        if rule is None:  # the profile's own rule, if it has one (a profile's rule never changes)
            try:
                rule = (await rt.io(rt.store.get_profile, name)).rule
            except UnknownProfile:
                pass
        rule, hp = self.hyperparameters(rule, given)
        async with rt.lock(name):
            done = await self.replayed(name, key)  # a concurrent twin committed while we waited
            if done is not None:
                return Adapted(done, done.parent, replayed=True)
            try:
                parent = await rt.io(rt.store.version, name)
                create, keep_audio = False, (await rt.io(rt.store.get_profile, name)).store_audio
            except UnknownProfile:
                parent, create, keep_audio = rt.base_info, True, False
            # adaptation's own pool: it never occupies prediction's threads
            model = await rt.adapt_compute(self.load, parent)
            job = await rt.adapt_compute(
                _Job, model, label, rule, hp, s.max_adapt_seconds, str(s.spool_dir),
                keep_audio, round(s.adapt_slice_seconds * 16_000), rt.gate.wait_idle)
            try:
                async for data in chunks:
                    await rt.adapt_compute(job.feed, data)
                result, weights = await rt.adapt_compute(job.finish)
                audio_s = job.decoder.samples_out / 16_000
                tags = {}
                if job.raw is not None:  # opted in: keep the recording, named by content
                    dest = s.audio_dir / name / f"{sha256(weights)[:16]}-{uuid.uuid4().hex}"
                    tags["audio"] = os.path.relpath(await rt.io(job.keep_raw, dest), s.data_dir)
                try:
                    info = await rt.write(
                        rt.store.commit_version, name, parent.number, weights, rule, label,
                        result.hyperparameters, result.utterances, list(job.session.model.labels),
                        {"prob_before": result.prob_before, "prob_after": result.prob_after,
                         "utterances": result.utterances, "new_label": result.new_label,
                         "audio_seconds": audio_s},
                        tags=tags, create=create, idempotency_key=key,
                        detector=parent.detector)  # thresholds set by hand stay set
                except IdempotentReplay as exc:  # another process committed it first
                    if tags:
                        (s.data_dir / tags["audio"]).unlink(missing_ok=True)
                    return Adapted(exc.info, exc.info.parent, replayed=True)
                except BaseException:
                    if tags:
                        (s.data_dir / tags["audio"]).unlink(missing_ok=True)
                    raise
            finally:
                job.abort()
        if job.session.model.enrolled_words():
            # the new version's first /predict would build its word spotter (about a second):
            # build it now, on adaptation's pool, in the model cache; the version is committed,
            # so the profile's lock is not held for it
            await rt.adapt_compute(lambda: self.load(info).prepare_words())
        return Adapted(info, parent.number, result, audio_s)


# ---- read-only, beside the HTTP service (tracekws wyoming, tracekws listen --profile) -------
# These processes must never migrate or write the database the HTTP service owns: they read
# the store directly, without a Runtime, and pick up new versions as they appear.
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
    detector: dict[str, Any] | None = None  # the version's own detector settings

    def detector_choice(self, defaults: DetectorConfig, threshold: float | None = None,
                        refractory: float | None = None) -> DetectorChoice:
        """What this version is heard with (:func:`detector_config`)."""
        return detector_config(self.model, self.detector, defaults, threshold, refractory)


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
            return Served(self.base_model, 1, self.base_sha, keywords(self.base_model.labels))
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
        return Served(model, info.number, info.sha256, keywords(model.labels), info.detector)

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


def profiles(conn: HTTPConnection) -> Profiles:
    """FastAPI dependency: the app's :class:`Profiles`."""
    return conn.app.state.profiles
