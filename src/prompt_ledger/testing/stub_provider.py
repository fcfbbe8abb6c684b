"""An OpenAI-compatible chat-completions server whose behaviour is scripted by the prompt.

Used by the test suite, the README demo and the benchmarks (where it is the "direct provider"
baseline, hence a bare ASGI app on uvicorn + httptools/uvloop, no framework, no middleware).

Routes (each also answers under a ``/v1`` prefix):

* ``POST /chat/completions`` — a ``chat.completion`` JSON: id ``chatcmpl-<random>``, one choice,
  ``usage`` with prompt_tokens = words in the prompt and completion_tokens = words in the reply
  (directives not counted). Header ``x-request-id: req_<random>``.
* ``GET /stats`` — ``{calls, calls_by_key, status_counts, in_flight, max_in_flight, clients,
  last_path, last_body, last_headers}``: ``clients`` counts distinct client (host, port) pairs,
  i.e. TCP connections, so tests can see pooling; ``last_body`` is the JSON received, so tests
  can check which params were sent.
* ``POST /reset`` — zero every counter (also the ``fail`` counters).
* ``GET /models`` — a small model list.

Directives go anywhere in the user message text, as ``[[stub name=value ...]]``; several blocks
merge (later values win), values with spaces are double-quoted (``reply="two words"``), and an
unknown name is answered with HTTP 400 so that typos do not pass silently:

* ``status=N`` — answer with HTTP N and an OpenAI-style error body (401's message quotes the
  bearer key, as OpenAI's does, so key-redaction can be tested).
* ``fail=N`` — the first N calls carrying the same ``key`` fail with ``status`` (default 503),
  later ones succeed. Counters live in the server; ``key`` defaults to the prompt text.
* ``key=K`` — names the counter for ``fail`` and for ``calls_by_key``.
* ``delay=S`` — wait S seconds (decimals allowed) before answering, success or failure.
* ``size=N`` — the reply is exactly N UTF-8 bytes: ``char`` repeated, padded with ``x``.
* ``char=C`` — the filler for ``size`` (default ``x``; e.g. ``char=é`` for 2-byte characters).
* ``reply=TEXT`` — the reply text; without ``reply`` or ``size`` it is ``echo: <prompt>``
  (prompt with directives removed, whitespace trimmed).
* ``usage=none`` — omit ``usage`` (provider without token counts).
* ``cached=N`` — ``usage.prompt_tokens_details.cached_tokens`` is N (prompt-cache hits).
* ``finish=REASON`` — the choice's ``finish_reason`` (default ``stop``).
* ``fault=hang`` / ``fault=reset`` — instead of an HTTP error, the failing calls (the first
  ``fail`` ones for the key; every call when ``fail`` is not given) never answer (``hang``: the
  stub waits until the client gives up and disconnects) or get the 200 headers and half of the
  body before the connection is dropped (``reset``). For fault-injection tests.
* ``fault=malformed`` / ``fault=nochoices`` — a 200 whose body is not JSON, or JSON without
  ``choices`` (a "compatible" server that answers nonsense).
* ``retry_after=S`` — error answers carry a ``Retry-After: S`` header (as OpenAI's 429s do).

Streaming (a request with ``"stream": true``): the reply is sent as OpenAI's SSE
``chat.completion.chunk`` frames — a first chunk with the assistant role, one chunk per piece of
the reply (a word with its leading whitespace), a chunk carrying ``finish_reason``, a usage chunk
(``choices: []``) when ``stream_options.include_usage`` is set, then ``data: [DONE]``. ``status``
(and ``fail``) answer the HTTP error before any chunk, exactly as without streaming.

* ``chunk_delay=S`` — wait S seconds between two chunks (``delay`` still delays the headers).
* ``fault=reset`` — the stream is cut (connection dropped) after half of the reply's pieces.
* ``fault=hang`` — the headers and the first half of the pieces, then nothing until the client
  disconnects.

``/stats`` also counts ``streams`` (started), ``streams_completed`` and ``streams_disconnected``
(the client went away before ``[DONE]``), so tests can see a client end the provider call.

Run it: ``python -m prompt_ledger.testing.stub_provider --port 8900``, or
:func:`serve_in_thread` / :func:`serve_in_subprocess` from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_PORT = 8900
_MAX_SIZE = 64 * 1024 * 1024
_DIRECTIVE = re.compile(r"\[\[stub\b(.*?)\]\]", re.DOTALL)
_ASSIGNMENT = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|(\S+))')
_KNOWN = frozenset(
    {
        "status",
        "fail",
        "key",
        "delay",
        "size",
        "char",
        "reply",
        "usage",
        "finish",
        "fault",
        "retry_after",
        "cached",
        "chunk_delay",
    }
)
_FAULTS = frozenset({"hang", "reset", "malformed", "nochoices"})
_HANG_LIMIT_S = 600.0
_ERROR_TYPES = {401: "invalid_request_error", 429: "rate_limit_exceeded"}


class DirectiveError(ValueError):
    pass


class _ConnectionReset(Exception):
    """Raised after a partial body: uvicorn then drops the connection (``fault=reset``)."""


class _QuietReset(logging.Filter):
    """Keeps uvicorn from logging a traceback for every scripted reset."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _ConnectionReset)


def parse_directives(text: str) -> tuple[dict[str, str], str]:
    """Return the merged directives and the text with every directive block removed."""
    if "[[stub" not in text:
        return {}, text.strip()
    directives: dict[str, str] = {}
    for block in _DIRECTIVE.finditer(text):
        body = block.group(1)
        for match in _ASSIGNMENT.finditer(body):
            name, quoted, bare = match.groups()
            if name not in _KNOWN:
                raise DirectiveError(f"unknown stub directive {name!r}")
            directives[name] = quoted.replace('\\"', '"') if quoted is not None else bare
        leftover = _ASSIGNMENT.sub("", body).strip()
        if leftover:
            raise DirectiveError(f"cannot parse stub directive text {leftover!r}")
    return directives, _DIRECTIVE.sub("", text).strip()


@dataclass
class StubState:
    """Counters shared by every request; one event loop, so no locking is needed."""

    calls: int = 0
    calls_by_key: dict[str, int] = field(default_factory=dict)
    failures_by_key: dict[str, int] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    clients: set[tuple[str, int]] = field(default_factory=set)
    last_path: str | None = None
    last_body: Any = None
    last_headers: dict[str, str] = field(default_factory=dict)
    streams: int = 0
    streams_completed: int = 0
    streams_disconnected: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "calls_by_key": dict(self.calls_by_key),
            "status_counts": dict(self.status_counts),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "clients": len(self.clients),
            "last_path": self.last_path,
            "last_body": self.last_body,
            "last_headers": dict(self.last_headers),
            "streams": self.streams,
            "streams_completed": self.streams_completed,
            "streams_disconnected": self.streams_disconnected,
        }


class StubApp:
    """The bare ASGI application; ``state`` is public so in-process users can read it."""

    def __init__(self) -> None:
        self.state = StubState()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/v1/"):
            path = path[3:]
        method: str = scope["method"]
        if path == "/chat/completions" and method == "POST":
            await self._chat(scope, receive, send)
        elif path == "/stats" and method == "GET":
            await _send_json(send, 200, self.state.snapshot())
        elif path == "/reset" and method == "POST":
            self.state = StubState()
            await _send_json(send, 200, {"ok": True})
        elif path == "/models" and method == "GET":
            await _send_json(send, 200, _MODELS)
        else:
            await _send_json(send, 404, _error_body(f"stub: no route {method} {path}", 404))

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        state.calls += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        client = scope.get("client")
        if client:
            state.clients.add((client[0], client[1]))
        status = 200
        fault: str | None = None
        try:
            raw = await _read_body(receive)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            state.last_path = scope["path"]
            state.last_headers = headers
            try:
                body = json.loads(raw)
                state.last_body = body
                prompt = _user_text(body)
                directives, clean_prompt = parse_directives(prompt)
                fault = _scripted_fault(directives, self.state, prompt)
            except (ValueError, TypeError, KeyError) as exc:
                status = 400
                await _send_json(send, 400, _error_body(f"stub: {exc}", 400))
                return
            status, payload = await self._answer(body, directives, prompt, clean_prompt, headers)
            extra = [(b"x-request-id", f"req_{secrets.token_hex(12)}".encode())]
            if status != 200 and "retry_after" in directives:
                extra.append((b"retry-after", directives["retry_after"].encode()))
            if status == 200 and body.get("stream") is True:
                await self._stream(body, directives, payload, fault, receive, send, extra)
                return
            if fault == "hang" and status != 400:
                status = 0  # never answered
                await _wait_for_disconnect(receive)
                return
            if fault == "reset" and status != 400:
                status = 0
                await _send_partial_then_reset(send, payload)
            if fault == "malformed" and status == 200:
                await _send_raw(send, 200, b"<html>gateway says hello</html>", b"text/html")
                return
            if fault == "nochoices" and status == 200:
                payload = {"id": "chatcmpl-empty", "object": "chat.completion"}
            await _send_json(send, status, payload, extra)
        finally:
            state.in_flight -= 1
            counted = str(status) if status else str(fault)
            state.status_counts[counted] = state.status_counts.get(counted, 0) + 1

    async def _answer(
        self,
        body: dict[str, Any],
        directives: dict[str, str],
        prompt: str,
        clean_prompt: str,
        headers: dict[str, str],
    ) -> tuple[int, dict[str, Any]]:
        state = self.state
        try:
            status = int(directives.get("status", "200"))
            fail = int(directives.get("fail", "0"))
            delay = float(directives.get("delay", "0"))
            size = int(directives["size"]) if "size" in directives else None
            int(directives.get("cached", "0"))
        except ValueError as exc:
            return 400, _error_body(f"stub: bad directive value: {exc}", 400)
        key = directives.get("key")
        if key is not None:
            state.calls_by_key[key] = state.calls_by_key.get(key, 0) + 1
        if fail:
            counter = key if key is not None else prompt
            seen = state.failures_by_key.get(counter, 0)
            state.failures_by_key[counter] = seen + 1
            status = (status if status != 200 else 503) if seen < fail else 200
        if delay > 0:
            await asyncio.sleep(delay)
        if status != 200:
            message = f"stub: scripted status {status}"
            if status == 401:
                bearer = headers.get("authorization", "").removeprefix("Bearer ")
                message = f"Incorrect API key provided: {bearer}"
            return status, _error_body(message, status)

        if size is not None:
            reply = _sized_reply(min(max(size, 0), _MAX_SIZE), directives.get("char", "x"))
        else:
            reply = directives.get("reply", f"echo: {clean_prompt}")
        completion: dict[str, Any] = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply, "refusal": None},
                    "logprobs": None,
                    "finish_reason": directives.get("finish", "stop"),
                }
            ],
            "system_fingerprint": None,
        }
        if directives.get("usage") != "none":
            prompt_tokens = len(clean_prompt.split())
            completion_tokens = len(reply.split())
            completion["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            if "cached" in directives:
                completion["usage"]["prompt_tokens_details"] = {
                    "cached_tokens": int(directives["cached"])
                }
        return 200, completion

    async def _stream(
        self,
        body: dict[str, Any],
        directives: dict[str, str],
        completion: dict[str, Any],
        fault: str | None,
        receive: Receive,
        send: Send,
        extra_headers: list[tuple[bytes, bytes]],
    ) -> None:
        """The completion as SSE chunks (see the module docstring)."""
        state = self.state
        state.streams += 1
        try:
            chunk_delay = float(directives.get("chunk_delay", "0"))
        except ValueError as exc:
            await _send_json(send, 400, _error_body(f"stub: bad directive value: {exc}", 400))
            return
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch())
        choice = completion["choices"][0]
        pieces = re.findall(r"\s*\S+", choice["message"]["content"]) or [""]
        base = {
            "id": completion["id"],
            "object": "chat.completion.chunk",
            "created": completion["created"],
            "model": completion["model"],
            "system_fingerprint": None,
        }

        def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

        frames = [frame({"role": "assistant", "content": ""})]
        frames += [frame({"content": piece}) for piece in pieces]
        cut_after = 1 + len(pieces) // 2 if fault in ("reset", "hang") else None
        frames.append(frame({}, choice["finish_reason"]))
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        if include_usage and "usage" in completion:
            usage = {**base, "choices": [], "usage": completion["usage"]}
            frames.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *extra_headers,
        ]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for n, data in enumerate(frames):
                if cut_after is not None and n == cut_after:
                    if fault == "hang":
                        await disconnected.wait()
                        state.streams_disconnected += 1
                        return
                    raise _ConnectionReset
                if n > 1 and chunk_delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(chunk_delay):
                            await disconnected.wait()
                if disconnected.is_set():
                    state.streams_disconnected += 1
                    return
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            state.streams_completed += 1
        finally:
            watcher.cancel()


def _scripted_fault(directives: dict[str, str], state: StubState, prompt: str) -> str | None:
    """``hang``/``reset`` when this call is one of the failing ones (see ``fault=``).

    Must run before ``_answer``, which counts the call against ``fail``.
    """
    fault = directives.get("fault")
    if fault is None:
        return None
    if fault not in _FAULTS:
        raise DirectiveError(f"fault must be one of {sorted(_FAULTS)}, not {fault!r}")
    if "fail" not in directives:
        return fault
    try:
        fail = int(directives["fail"])
    except ValueError:
        return None  # _answer reports the bad value
    counter = directives.get("key", prompt)
    return fault if state.failures_by_key.get(counter, 0) < fail else None


async def _wait_for_disconnect(receive: Receive) -> None:
    """Answer nothing until the client hangs up (capped, so a test can never hang forever)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_HANG_LIMIT_S):
            while (await receive())["type"] != "http.disconnect":
                pass


async def _send_partial_then_reset(send: Send, payload: Any) -> None:
    """Promise a full body, send half of it, then make uvicorn drop the connection."""
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True})
    raise _ConnectionReset


_MODELS = {
    "object": "list",
    "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "stub"}
        for name in ("gpt-4o-mini", "gpt-4o", "stub-model")
    ],
}


def _user_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body["messages"]:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def _sized_reply(size: int, char: str) -> str:
    char = char or "x"
    width = len(char.encode())
    count = size // width
    return char * count + "x" * (size - count * width)


def _error_body(message: str, status: int) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(
                status, "server_error" if status >= 500 else "invalid_request_error"
            ),
            "param": None,
            "code": str(status),
        }
    }


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_raw(
    send: Send,
    status: int,
    data: bytes,
    content_type: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(data)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _send_json(
    send: Send,
    status: int,
    payload: Any,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    await _send_raw(send, status, data, b"application/json", extra_headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _config(app: StubApp, host: str, port: int) -> uvicorn.Config:
    errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietReset) for f in errors.filters):
        errors.addFilter(_QuietReset())
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",  # uvloop when installed
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,  # thousands of benchmark connections may arrive at once
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


def run(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve in the foreground. ``port=0`` picks a free port; the URL is printed either way."""
    sock = _bind(host, port)
    print(f"stub provider listening on {_url(host, sock)}", flush=True)
    uvicorn.Server(_config(StubApp(), host, port)).run(sockets=[sock])


@contextlib.contextmanager
def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the stub on a daemon thread (its own event loop); yields the base URL (``…/v1``)."""
    sock = _bind(host, port)
    server = uvicorn.Server(_config(StubApp(), host, port))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="stub-provider", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("stub provider did not start")
            time.sleep(0.01)
        yield _url(host, sock)
    finally:
        server.should_exit = True
        server.force_exit = True  # do not wait for delayed requests still sleeping
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def serve_in_subprocess(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the stub in its own process (own GIL/core, as benchmarks need); yields the base URL."""
    proc = subprocess.Popen(  # noqa: S603 (our interpreter and module, no shell)
        [
            sys.executable,
            "-m",
            "prompt_ledger.testing.stub_provider",
            "--host",
            host,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("stub provider listening on "):
            raise RuntimeError(f"stub provider did not start: {line!r}")
        url = line.rsplit(" ", 1)[1].strip()
        _wait_until_answering(url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_until_answering(base_url: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{base_url}/stats", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def stub_stats(base_url: str) -> dict[str, Any]:
    """The stub's ``/stats``; ``base_url`` as yielded by the serve helpers."""
    response = httpx.get(f"{base_url}/stats", timeout=5)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def reset_stub(base_url: str) -> None:
    httpx.post(f"{base_url}/reset", timeout=5).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible stub provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    run(args.host, args.port)


if __name__ == "__main__":
    main()
