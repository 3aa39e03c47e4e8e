"""Concurrent /adapt calls released together, for the version-chain tests (one process or
several on one database)."""

from __future__ import annotations

import threading

import httpx
from _clips import wave
from tracekws.model.audio import encode_wav
from tracekws.model.pipeline import KEYWORDS

AUDIO = {"content-type": "audio/wav"}


def adapt_concurrently(urls: list[str], profile: str, n: int = 16,
                       client_timeout: float = 120, join_timeout: float = 180,
                       ) -> list[httpx.Response | None]:
    """``n`` /adapt calls on ``profile`` (keyword i % 10, a real clip each), started at once
    behind a barrier; call i goes to ``urls[i % len(urls)]``. None where a call never returned."""
    clips = [encode_wav(wave(KEYWORDS[i % 10], i % 2)) for i in range(n)]
    results: list[httpx.Response | None] = [None] * n
    start = threading.Barrier(n)

    def one(i: int) -> None:
        with httpx.Client(base_url=urls[i % len(urls)], timeout=client_timeout) as c:
            start.wait()
            results[i] = c.post("/adapt", params={"profile": profile, "label": KEYWORDS[i % 10]},
                                content=clips[i], headers=AUDIO)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_timeout)
    return results
