"""Audio uploads read as a stream: content-type check, byte limit (413 as soon as it is
passed, or up front from Content-Length), idle timeout, and multipart ``file`` extraction
without buffering the body.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from .problems import Problem

AUDIO_TYPES = {
    "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/flac", "audio/x-flac",
    "audio/ogg", "application/ogg", "audio/aiff", "audio/x-aiff", "application/octet-stream",
}
MULTIPART = "multipart/form-data"
# the OpenAPI request body of /predict and /adapt: raw audio of any accepted type, or a
# multipart form whose `file` field holds it
_BINARY = {"type": "string", "format": "binary"}
AUDIO_BODY = {
    "required": True,
    "description": "The recording: the raw bytes of a WAV, FLAC, OGG or AIFF file (any "
                   "sample rate from 8 to 48 kHz, mono or more channels), or a multipart "
                   "form with the file in its `file` field.",
    "content": {
        **{t: {"schema": _BINARY} for t in sorted(AUDIO_TYPES)},
        MULTIPART: {"schema": {"type": "object", "required": ["file"],
                               "properties": {"file": _BINARY}}},
    },
}


class _FileField:
    """Streams the bytes of the first multipart part named ``file``."""

    def __init__(self, boundary: bytes) -> None:
        self.out: list[bytes] = []
        self.field, self.value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.in_file = False
        self.done = False
        self.found = False
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._acc("field", d[s:e]),
            "on_header_value": lambda d, s, e: self._acc("value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        })

    def _acc(self, which: str, data: bytes) -> None:
        setattr(self, which, getattr(self, which) + data)

    def _begin(self) -> None:
        self.headers, self.field, self.value = {}, b"", b""

    def _header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field, self.value = b"", b""

    def _headers_done(self) -> None:
        _, opts = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.in_file = not self.done and opts.get(b"name") == b"file"
        self.found = self.found or self.in_file

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.out.append(data[start:end])

    def _end(self) -> None:
        if self.in_file:
            self.done = True
        self.in_file = False

    def feed(self, chunk: bytes) -> bytes:
        try:
            self.parser.write(chunk)
        except Exception as exc:
            raise Problem("bad-multipart", f"malformed multipart body ({exc})") from exc
        data, self.out = b"".join(self.out), []
        return data

    def close(self) -> None:
        try:
            self.parser.finalize()
        except Exception as exc:
            raise Problem("bad-multipart", f"malformed multipart body ({exc})") from exc
        if not self.found:
            raise Problem("missing-file", "the multipart body has no `file` field")


def check_headers(request: Request, max_bytes: int) -> _FileField | None:
    """Validate Content-Type and Content-Length before any body byte is read."""
    ctype = request.headers.get("content-type")
    multipart = None
    if ctype:
        media, opts = parse_options_header(ctype)
        media_s = media.decode("latin-1").lower()
        if media_s == MULTIPART:
            boundary = opts.get(b"boundary")
            if not boundary:
                raise Problem("bad-multipart", "multipart/form-data without a boundary")
            multipart = _FileField(boundary)
        elif media_s not in AUDIO_TYPES:
            raise Problem("unsupported-media-type",
                          f"Content-Type {media_s!r} is not an accepted audio type")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise Problem("validation-error", "Content-Length is not a number",
                          status=400) from None
        if n > max_bytes:
            raise Problem("body-too-large", f"the body is {n} bytes; the limit is {max_bytes}")
    return multipart


async def audio_chunks(request: Request, max_bytes: int, idle_timeout: float,
                       total_timeout: float = 300.0) -> AsyncIterator[bytes]:
    """Yield the audio bytes of the request (raw body or multipart ``file``) as they arrive.

    Stalls longer than ``idle_timeout`` and uploads longer than ``total_timeout`` end in a
    408, so a slow client cannot hold a profile's adaptation lock indefinitely.
    """
    multipart = check_headers(request, max_bytes)
    total = 0
    stream = request.stream().__aiter__()
    deadline = time.monotonic() + total_timeout
    while True:
        left = deadline - time.monotonic()
        try:
            with anyio.fail_after(max(0.0, min(idle_timeout, left))):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            break
        except TimeoutError:
            if left <= idle_timeout:
                raise Problem("upload-timeout",
                              f"the upload took longer than {total_timeout:g} s") from None
            raise Problem("upload-timeout", f"no body bytes for {idle_timeout:g} s") from None
        except ClientDisconnect:
            raise
        total += len(chunk)
        if total > max_bytes:
            raise Problem("body-too-large", f"the body exceeds the limit of {max_bytes} bytes")
        data = multipart.feed(chunk) if multipart is not None else chunk
        if data:
            yield data
    if multipart is not None:
        multipart.close()
