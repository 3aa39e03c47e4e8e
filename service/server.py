"""How ``tracekws serve`` should run uvicorn: :func:`uvicorn_config` returns the keyword
arguments that bound what a client can make the server hold (pass them to ``uvicorn.run``
or ``uvicorn.Config`` next to the app, host and port).

What it sets, and why:

- ``http``: :class:`HardenedHttpToolsProtocol`, uvicorn's httptools protocol plus
  (1) a header timeout: a connection must finish its request line and headers within
  ``HTTP_HEADER_TIMEOUT_S`` of connecting or of its previous response (uvicorn itself only
  times out idle keep-alive connections, so a client trickling header bytes, or connecting
  and sending nothing, held a connection for ever); (2) a request target over
  ``MAX_REQUEST_TARGET`` bytes is answered 414 and the connection closed (WebSocket upgrades
  included, before they reach the WebSocket layer).
- ``ws``: :class:`HardenedWebSocketProtocol`, uvicorn's websockets-sansio protocol that
  actually sends the 414/431 the websockets handshake parser produces for an over-long
  request or header line (uvicorn 0.54 queued it and never wrote it, leaving the socket
  open and silent).
- ``ws_max_size``: ``STREAM_MAX_MESSAGE_BYTES``: a bigger message is refused by the
  protocol (close 1009) before it is buffered; ``ws_per_message_deflate`` off (no
  decompression work for a peer); pings every 20 s.
- ``timeout_keep_alive`` 5 s, ``h11_max_incomplete_event_size`` 16 KiB (if h11 is used),
  ``limit_concurrency``, ``timeout_graceful_shutdown``, no ``server`` header, and a
  ``log_config`` whose handlers redact API keys (:mod:`service.logfilter`).
"""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .settings import Settings

MAX_REQUEST_TARGET = 8192  # bytes of method-less request target (path + query)


class _TargetTooLong(Exception):
    pass


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._target_too_long = False
        self._header_timer = None
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its body has its own timeouts
        self._send_and_close(408, b"Request Timeout", "the request headers took too long")

    def _send_and_close(self, status: int, phrase: bytes, msg: str) -> None:
        body = msg.encode("ascii")
        self.transport.write(b"".join([
            b"HTTP/1.1 %d %s\r\n" % (status, phrase),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_REQUEST_TARGET:
            self._target_too_long = True
            raise _TargetTooLong

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers are timed from here

    def send_400_response(self, msg: str) -> None:
        if getattr(self, "_target_too_long", False):
            self._send_and_close(414, b"URI Too Long",
                                 f"request targets are limited to {MAX_REQUEST_TARGET} bytes")
            return
        super().send_400_response(msg)

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        self._disarm_header_timer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._disarm_header_timer()
        super().handle_websocket_upgrade()


class HardenedWebSocketProtocol(WebSocketsSansIOProtocol):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # a handshake the parser refused (request/header line too long, too many headers):
        # websockets queued a 414/431 response, which uvicorn never writes
        if not self.handshake_initiated and getattr(self.conn, "handshake_exc", None):
            out = self.conn.data_to_send()
            if out:
                self.transport.write(b"".join(out))
            self.transport.close()


def log_config() -> dict[str, Any]:
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["redact_keys"] = {"()": "tracekws.service.logfilter.RedactFilter"}
    for handler in cfg.get("handlers", {}).values():
        handler.setdefault("filters", []).append("redact_keys")
    return cfg


def uvicorn_config(settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` (not the app, host or port)."""
    s = settings or Settings()
    http = type("HardenedHttp", (HardenedHttpToolsProtocol,),
                {"header_timeout": s.http_header_timeout_s})
    return {
        "http": http,
        "ws": HardenedWebSocketProtocol,
        "ws_max_size": s.stream_max_message_bytes,
        "ws_max_queue": 8,
        "ws_per_message_deflate": False,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,
        "limit_concurrency": s.http_max_connections,
        "timeout_graceful_shutdown": 10,
        "server_header": False,
        "log_config": log_config(),
    }
