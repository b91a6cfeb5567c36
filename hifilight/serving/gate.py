"""The HTTP gate in front of the service (an ASGI middleware BentoML mounts in serve/service.py): body size, the
bearer token, one error shape; and the log filter that keeps a client's mistake to one line."""

from __future__ import annotations

import hmac
import json
import logging

# probes and the web page (markup only; every call it makes carries the token) stay open without the token
OPEN_PATHS = ("/readyz", "/livez", "/healthz", "/metrics", "/ui", "/ui/")


class RequestGate:
    """Refuses, before the service sees them, bodies over `max_body` bytes (413) and, when `token` is set, requests
    without `Authorization: Bearer <token>` (401; the probes in OPEN_PATHS stay open). Errors are one JSON shape,
    {"error": "..."}. A chunked body is read up to the limit and replayed to the service."""

    def __init__(self, app, max_body: int = 1_000_000, token: str | None = None):
        self.app, self.max_body, self.token = app, max_body, (token or None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _one_error_shape(send)
        headers = dict(scope.get("headers") or [])
        if self.token and scope.get("path") not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.token.encode()):
                return await _reply(send, 401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _drain(receive, DRAIN_LIMIT)  # read (and drop) what the client sends, so it can read the answer
            return await _reply(send, 413, f"request body over {self.max_body} bytes (HIFILIGHT_MAX_BODY)")
        if length is not None:
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:  # no length given: read it here, within the limit
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await _reply(send, 413, f"request body over {self.max_body} bytes (HIFILIGHT_MAX_BODY)")
        return await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}]), send)


def _one_error_shape(send):
    """Pass responses through, rewriting a 4xx body that is a one-element JSON list ([{"error": ...}], as BentoML
    answers some client errors) to the object inside, so every error has the shape {"error": ...}."""
    held: dict = {}

    async def wrapped(message):
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            held.update(start=message, body=b"")
            return
        if not held or message["type"] != "http.response.body":
            return await send(message)
        held["body"] += message.get("body", b"")
        if message.get("more_body"):
            return
        body = held["body"]
        try:
            data = json.loads(body)
            if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
                body = json.dumps(data[0]).encode()
        except ValueError:
            pass
        start = held.pop("start")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped


DRAIN_LIMIT = 32_000_000  # bytes of an oversized body read and dropped before the 413; beyond it the answer is sent


async def _drain(receive, limit: int) -> None:
    seen, more = 0, True
    while more and seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        more = message.get("more_body", False)


def _replay(messages: list[dict]):
    queue = list(messages)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ClientErrorFilter(logging.Filter):
    """A client's mistake is one WARNING line, not an ERROR with a traceback: for log records whose exception is a
    4xx (an `error_code` below 500, or a pydantic ValidationError), drop the traceback and name the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        code = getattr(getattr(exc, "error_code", None), "value", getattr(exc, "error_code", None))
        client = (isinstance(code, int) and 400 <= code < 500) or type(exc).__name__ == "ValidationError"
        if exc is not None and client:
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
