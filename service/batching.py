"""Dynamic batching for /predict: concurrent requests for the same model version run as one
batch through the network.

The network's cost is dominated by its per-frame loop (Python and small matrix products), so a
batch of 8 clips costs about as much as 2-3 single clips. Batching never waits: a batch is
whatever has queued while the previous one was computing (at low load every request runs
alone, at once). Clips are grouped by frame count, since the readout is taken at the last frame.

Note: a batched matrix product may round differently from a single one (~1e-6 on logits), so
under concurrency the low-order digits of a probability can depend on which requests shared a
batch; ``predict_max_batch = 1`` turns batching off for bitwise-reproducible scores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import torch
from tracekws.model.pipeline import KWSModel


@dataclass
class _Item:
    wave: torch.Tensor
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop()
                                   .create_future())


def predict_batch(model: KWSModel, waves: list[torch.Tensor]) -> list[list[tuple[str, float]]]:
    """(label, probability) lists, best first, for clips with the same number of frames."""
    if len(waves) == 1:
        return [model.predict(waves[0])]
    c = model.config.frontend
    n = min(w.numel() for w in waves)
    used = c.samples(c.frames(n)) or n  # the samples the clips' common frames span
    return model.predict(torch.stack([w[:used] for w in waves]))


def frames(model: KWSModel, n: int) -> int:
    return model.config.frontend.frames(n)


class Batcher:
    """Per-model queues drained by one worker task each; ``run`` executes a batch (in a
    worker thread, under the compute limit)."""

    def __init__(self, run: Callable[..., Awaitable], max_batch: int = 8) -> None:
        self.run, self.max_batch = run, max_batch
        self.queues: dict[int, list[_Item]] = {}
        self.models: dict[int, KWSModel] = {}
        self.workers: dict[int, asyncio.Task] = {}
        self.batches = 0
        self.items = 0

    async def predict(self, model: KWSModel, wave: torch.Tensor) -> list[tuple[str, float]]:
        if self.max_batch <= 1:
            return (await self.run(predict_batch, model, [wave]))[0]
        key = id(model)
        item = _Item(wave)
        self.queues.setdefault(key, []).append(item)
        self.models[key] = model
        if key not in self.workers:
            self.workers[key] = asyncio.get_running_loop().create_task(self._drain(key))
        return await item.future

    async def _drain(self, key: int) -> None:
        model = self.models[key]
        try:
            while self.queues.get(key):
                queue = self.queues[key]
                # the largest group of clips with one frame count, oldest first
                f0 = frames(model, queue[0].wave.numel())
                group = [it for it in queue if frames(model, it.wave.numel()) == f0]
                group = group[: self.max_batch]
                ids = {id(it) for it in group}
                self.queues[key] = [it for it in queue if id(it) not in ids]
                live = [it for it in group if not it.future.done()]
                if not live:
                    continue
                try:
                    results = await self.run(predict_batch, model, [it.wave for it in live])
                except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                    for it in live:
                        if not it.future.done():
                            it.future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                self.batches += 1
                self.items += len(live)
                for it, res in zip(live, results, strict=True):
                    if not it.future.done():
                        it.future.set_result(res)
        finally:
            self.workers.pop(key, None)
            self.queues.pop(key, None)
            self.models.pop(key, None)
