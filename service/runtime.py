"""What the app holds while it runs: settings, database, the shipped model, a cache of loaded
versions, per-profile locks, the compute thread pools and the metrics registry.

Created once by the lifespan; routes reach it as ``request.app.state.runtime``.

Compute runs in two thread pools: prediction (/predict batches, /stream) and adaptation
(/adapt), sized by ``COMPUTE_THREADS`` and ``ADAPT_THREADS``, so adaptations can never take
the threads predictions need. Python's GIL is still shared, so an adaptation also *yields*:
it learns its upload in slices of ``ADAPT_SLICE_SECONDS`` of audio and, between two slices,
waits (up to ``ADAPT_YIELD_MS``) while predictions are queued or running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import torch
from starlette.requests import HTTPConnection
from tracekws.model.pipeline import KWSModel

from . import db
from .batching import Batcher
from .metrics import Metrics
from .problems import Problem
from .settings import DEFAULT_PROFILE, Settings
from .store import (
    Quotas,
    Store,
    VersionInfo,
    sha256,
)

log = logging.getLogger("tracekws.service")
T = TypeVar("T")


class ModelCache:
    """LRU of loaded models keyed by the sha256 of their weights (content-addressed, so a
    cached model is always exactly the bytes that were checked)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[str, KWSModel] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str, load: Callable[[], KWSModel]) -> KWSModel:
        with self.lock:
            m = self.items.get(key)
            if m is not None:
                self.items.move_to_end(key)
                return m
        m = load()  # outside the lock: loading one version does not block the others
        with self.lock:
            self.items[key] = m
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return m

    def __len__(self) -> int:
        return len(self.items)


class PredictionGate:
    """Counts prediction jobs queued or running; adaptation threads wait on it between two
    slices of work (bounded), so a prediction does not share the GIL with a busy adapter."""

    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s
        self.pending = 0
        self.cond = threading.Condition()
        self.yields = 0  # times an adaptation waited (metrics)

    def enter(self) -> None:
        with self.cond:
            self.pending += 1

    def leave(self) -> None:
        with self.cond:
            self.pending -= 1
            if self.pending == 0:
                self.cond.notify_all()

    def wait_idle(self) -> None:
        """Called by an adaptation thread: wait (at most ``max_wait_s``) for no pending
        prediction. Bounded, so a stream of predictions slows adaptation but never stops it."""
        if self.max_wait_s <= 0 or not self.pending:
            return
        with self.cond:
            if self.pending:
                self.yields += 1
                self.cond.wait_for(lambda: self.pending == 0, timeout=self.max_wait_s)


async def _run(pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
    """``fn()`` in ``pool``. If the caller is cancelled, a job not yet started never runs and
    a running one is waited for (a thread cannot be stopped, and the caller's cleanup must not
    touch objects the job is still using)."""
    cf: Future = pool.submit(fn)
    try:
        return await asyncio.wrap_future(cf)
    except BaseException:
        if not cf.done() and not cf.cancel():  # running: let it finish first
            with anyio.CancelScope(shield=True):
                await asyncio.wait([asyncio.wrap_future(cf)])
        raise


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.locks: dict[str, list] = {}  # profile -> [lock, holders + waiters]
        self.predict_threads = settings.predict_pool_threads
        self.adapt_threads = settings.adapt_pool_threads
        self.torch_threads = settings.effective_torch_threads
        self.predict_pool: ThreadPoolExecutor | None = None  # created by start()
        self.adapt_pool: ThreadPoolExecutor | None = None
        self.gate = PredictionGate(settings.adapt_yield_ms / 1000)
        self.decode_slots = anyio.Semaphore(settings.max_concurrent_decodes)
        self.batcher = Batcher(self.compute, settings.predict_max_batch)
        self.started = time.time()
        self.engine = None
        self.lock_engine = None
        self.ready = False
        self.storage_error: str | None = None  # set by a write failing for space

    # ---- startup / shutdown ---------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        # two pools: adaptations never occupy the threads predictions (and streams) run on
        self.predict_pool = ThreadPoolExecutor(self.predict_threads,
                                               thread_name_prefix="tracekws-predict")
        self.adapt_pool = ThreadPoolExecutor(self.adapt_threads,
                                             thread_name_prefix="tracekws-adapt")
        # intra-op threads per job: (prediction + adaptation threads) x this <= cores
        torch.set_num_threads(self.torch_threads)
        if self.torch_threads < s.torch_threads:
            log.warning("TRACEKWS_TORCH_THREADS=%d would oversubscribe %d cores with %d "
                        "prediction + %d adaptation threads; using %d", s.torch_threads,
                        os.cpu_count() or 1, self.predict_threads, self.adapt_threads,
                        self.torch_threads)
        # the data dir holds people's voice models (and, if they opt in, recordings)
        s.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        s.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in s.spool_dir.glob("*"):  # left by a killed process
            if stale.is_file():
                stale.unlink(missing_ok=True)
        path = s.model_file()
        if not path.is_file():
            raise RuntimeError(f"no model file at {path}; set TRACEKWS_MODEL_PATH or train and "
                               "ship pretrained/tracekws-gsc12.safetensors")
        self.base_bytes = path.read_bytes()
        self.base_model = KWSModel.from_bytes(self.base_bytes)
        self.base_model.net.eval()
        self.base_sha = sha256(self.base_bytes)
        self.model_path = path
        self.engine = db.make_engine(str(s.database_url), s.db_busy_timeout_ms)
        self.schema = db.migrate(self.engine)
        self.lock_engine = db.make_lock_engine(self.engine)
        self.store = Store(self.engine, self.base_bytes, self.base_model.labels,
                           Quotas(s.max_profiles, s.max_versions_per_profile,
                                  s.max_storage_bytes))
        self.cache = ModelCache(s.model_cache_size)
        self.base_info = VersionInfo(
            DEFAULT_PROFILE, 1, None, datetime.fromtimestamp(path.stat().st_mtime, UTC),
            "pretrained", None, {}, 0, list(self.base_model.labels),
            dict(self.base_model.config.meta), self.base_sha, len(self.base_bytes),
            {"source": "shipped model", "path": path.name})
        # warm the inference path once so the first request is not the slow one
        self.base_model.logits(torch.zeros(16_000))
        self.ready = True
        log.info("tracekws service ready: model %s (sha256 %s), schema %s, database %s",
                 path, self.base_sha[:12], self.schema, self.engine.url.render_as_string())

    def close(self) -> None:
        self.ready = False
        for pool in (self.predict_pool, self.adapt_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        for engine in (self.lock_engine, self.engine):
            if engine is not None:
                engine.dispose()

    # ---- concurrency helpers --------------------------------------------------------------
    @asynccontextmanager
    async def lock(self, profile: str) -> AsyncIterator[None]:
        """Serialize changes to one profile: within this process (an anyio lock; entries
        live only while someone holds or waits for them, so unknown profile names cannot pile
        up) and, on PostgreSQL, across processes (a session advisory lock on a connection of
        its own, released when the holder finishes or its process dies)."""
        entry = self.locks.setdefault(profile, [anyio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                conn = await self._db_lock(profile)
                try:
                    yield
                finally:
                    if conn is not None:
                        with anyio.CancelScope(shield=True):
                            await self.io(conn.close)  # ends the session: lock released
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self.locks.pop(profile, None)

    async def _db_lock(self, profile: str):
        """PostgreSQL: a connection holding the profile's advisory lock (polled every 50 ms,
        so a wait never occupies a thread); None on SQLite."""
        if self.lock_engine is None:
            return None
        conn = await self.io(self.lock_engine.connect)
        try:
            while not await self.io(db.try_advisory_lock, conn, profile):
                await anyio.sleep(0.05)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.io(conn.close)
            raise
        return conn

    async def decode_slot_acquire(self) -> None:
        """One of ``MAX_CONCURRENT_DECODES`` /predict decode slots (release it with
        ``decode_slots.release()``); 503 ``busy`` if none frees up within the idle timeout."""
        try:
            with anyio.fail_after(self.settings.upload_idle_timeout_s):
                await self.decode_slots.acquire()
        except TimeoutError:
            self.metrics.inc("tracekws_busy_total")
            raise Problem("busy", f"all {self.settings.max_concurrent_decodes} decode slots "
                          "are taken; retry", headers={"Retry-After": "1"}) from None

    def storage_full(self, reason: str) -> None:
        if self.storage_error is None:
            log.error("storage full (%s): not ready until a write succeeds", reason)
        self.storage_error = reason

    def storage_ok(self) -> None:
        if self.storage_error is not None:
            log.info("a write succeeded: storage no longer full")
        self.storage_error = None

    async def write(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """A database write in a worker thread; success clears the storage-full state."""
        out = await self.io(fn, *args, **kw)
        self.storage_ok()
        return out

    async def compute(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Prediction work (/predict batches, /stream) in the prediction pool. While it is
        queued or running, adaptation threads hold back (see :class:`PredictionGate`)."""
        self.gate.enter()
        try:
            return await _run(self.predict_pool, partial(fn, *args, **kw))
        finally:
            self.gate.leave()

    async def adapt_compute(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Adaptation work (/adapt) in the adaptation pool, never on prediction's threads."""
        return await _run(self.adapt_pool, partial(fn, *args, **kw))

    async def io(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Blocking database work in a worker thread (separate from the compute limit)."""
        return await anyio.to_thread.run_sync(partial(fn, *args, **kw))


def runtime(conn: HTTPConnection) -> Runtime:
    """FastAPI dependency (and plain helper): the app's :class:`Runtime`."""
    return conn.app.state.runtime
