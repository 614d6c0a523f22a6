"""Fake model vendors on loopback that speak OpenAI's and Anthropic's streaming wire formats.

A real HTTP/1.1 server (asyncio streams, on a thread and event loop of its own) that the real
SDK clients talk to as to the vendor. It records every request, notices a client that hangs
up mid-reply, and plays one script per request (the next one queued with `play`, else a
short default reply). Steps, as in tests/fakes.py:
  {"say": "text"}               one text delta (`sent` keeps the time it was written)
  {"repeat": "text"}            that delta again and again, until the client hangs up (a model
                                stuck in a loop)
  {"status": 429}               answer that HTTP status with the vendor's error body (first step);
                                with "message": "..." that body quotes it (an upstream that
                                echoes what it was sent, a key included)
  {"echo": "tool"}              one text delta: the last tool result the request sent back (a
                                model that answers from what a tool read)
  {"gate": "name"}              send nothing until the test opens it: gate("name").set()
  {"drop": True}                close the connection mid-reply
  {"error": "overloaded"}       the vendor's error event inside the stream
  {"finish": "stop", "usage": [3, 5]}   the end (added with defaults if a script has none)
  {"reason": "text"}            a reasoning delta: OpenAI-compatible `reasoning_content` (or the
                                field named by "field", e.g. "reasoning"), Anthropic a `thinking`
                                block (with its `signature_delta` before it closes)
  {"call": "name", "id": "call_1", "args": ["{\"q", "\": 1}"]}   a tool call whose arguments
                                stream in those fragments: OpenAI `tool_calls` deltas by index,
                                Anthropic a `tool_use` block with `input_json_delta`s
                                (end the round with {"finish": "tool_calls"} / {"finish": "tool_use"})
Like the vendors, it ends a reply at the output limit the request names (`max_tokens`, or
OpenAI's `max_completion_tokens`) with its length reason, unless `honours_limit` is False (a
server that ignores it); a parameter named in `refuses` is answered as OpenAI answers
`max_tokens` for its newer models: HTTP 400, "Unsupported parameter".
"""

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

ERROR_TYPES = {
    "openai": {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_exceeded"},
    "anthropic": {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"},
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    closed_early: threading.Event = field(default_factory=threading.Event)


class VendorServer:
    def __init__(self, vendor: str, models: tuple[str, ...] = ("gpt-test", "llama3.2:3b")) -> None:
        assert vendor in ("openai", "anthropic")
        self.vendor = vendor
        self.models = list(models)
        self.models_status = 200
        self.honours_limit = True
        self.refuses: set[str] = set()
        self.requests: list[Request] = []
        self.sent: list[tuple[str, float]] = []  # (text, time.monotonic() as it is written)
        self.gates: dict[str, threading.Event] = {}
        self._scripts: deque[list[dict]] = deque()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fake-{vendor}", daemon=True)
        self.port = 0

    # --- what tests use ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def play(self, *steps: dict) -> None:
        self._scripts.append(list(steps))

    def gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())

    def completions(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]

    def __enter__(self) -> "VendorServer":
        self._thread.start()
        assert self._ready.wait(5), "the fake vendor did not start"
        return self

    def __exit__(self, *exc) -> None:
        for gate in self.gates.values():
            gate.set()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    # --- the server --------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._connections: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            for writer in self._writers:  # connections the clients keep alive
                writer.close()
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        self._writers.add(writer)
        try:
            while request := await _read_request(reader):
                self.requests.append(request)
                if request.method == "GET" and request.path.endswith("/models"):
                    await self._models(writer)
                elif not await self._reply(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _models(self, writer: asyncio.StreamWriter) -> None:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in self.models]
        body = {"object": "list", "data": data} if self.models_status == 200 else _error_body(self, 500)
        await _send_json(writer, self.models_status, body)

    async def _reply(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Play the next script; False if the connection must close."""
        refused = next((name for name in sorted(self.refuses) if name in (request.body or {})), None)
        if refused is not None:  # before the script: the request never reached the model
            await _send_json(writer, 400, _unsupported_body(refused))
            return True
        steps = self._scripts.popleft() if self._scripts else [{"say": "Hello"}, {"say": " there"}]
        if "status" in steps[0]:
            status, message = steps[0]["status"], steps[0].get("message")
            await _send_json(writer, status, _error_body(self, status, message))
            return True
        if not any("finish" in s or "drop" in s or "error" in s or "repeat" in s for s in steps):
            steps = [*steps, {"finish": "stop"}]
        hangup = asyncio.ensure_future(reader.read(1))  # b"" once the client closes
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        usage = next((s.get("usage") for s in steps if "finish" in s), None)
        wire = (OpenAIWire if self.vendor == "openai" else AnthropicWire)(request, usage)
        limit = _output_limit(request) if self.honours_limit else None
        try:
            await _chunk(writer, wire.begin())
            for step in _played(steps):
                if "say" in step and limit is not None and wire.parts >= limit:
                    await _chunk(writer, wire.end(wire.LENGTH, None))
                    break
                if "echo" in step:
                    step = {"say": _last_tool_result(request.body or {})}
                if "say" in step:
                    self.sent.append((step["say"], time.monotonic()))
                    await _chunk(writer, wire.text(step["say"]))
                elif "reason" in step:
                    self.sent.append((step["reason"], time.monotonic()))
                    await _chunk(
                        writer, wire.reasoning(step["reason"], step.get("field", "reasoning_content"))
                    )
                elif "call" in step:
                    for data in wire.call(step["call"], step.get("id", "call_1"), step.get("args", ["{}"])):
                        await _chunk(writer, data)
                elif "gate" in step:
                    gate = self.gate(step["gate"])
                    while not gate.is_set() and not hangup.done():  # noqa: ASYNC110 - a threading.Event
                        await asyncio.sleep(0.002)
                elif "drop" in step:
                    writer.transport.abort()
                    return False
                elif "error" in step:
                    await _chunk(writer, wire.error(step["error"]))
                elif "finish" in step:
                    await _chunk(writer, wire.end(step["finish"], step.get("usage")))
                await asyncio.sleep(0)  # lets a hang-up be noticed, even by an endless reply
                if hangup.done():
                    request.closed_early.set()
                    return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        except ConnectionError:
            request.closed_early.set()
            return False
        finally:
            if not hangup.done():
                hangup.cancel()
                # Wait for it to let go of the reader: the next request reads from it.
                await asyncio.wait([hangup])


class Wire:
    def __init__(self, request: Request, usage: list[int] | None) -> None:
        body = request.body or {}
        self.model = body.get("model", "")
        words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        self.words = usage[0] if usage else words
        self.parts = 0
        self.calls = 0


class OpenAIWire(Wire):
    """Chat Completions chunks: `data: {...}` lines, a usage chunk, then `data: [DONE]`."""

    LENGTH = "length"

    def _chunk(self, delta: dict, finish: str | None = None, choices: bool = True) -> bytes:
        data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": self.model}
        data["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []
        return f"data: {json.dumps(data)}\n\n".encode()

    def begin(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def text(self, text: str) -> bytes:
        self.parts += 1
        return self._chunk({"content": text})

    def reasoning(self, text: str, field: str) -> bytes:
        self.parts += 1
        return self._chunk({field: text})

    def call(self, name: str, call_id: str, fragments: list[str]) -> Iterator[bytes]:
        index = self.calls
        self.calls += 1
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        yield self._chunk({"tool_calls": [head]})
        for fragment in fragments:
            yield self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def error(self, kind: str) -> bytes:
        return f"data: {json.dumps({'error': {'message': kind, 'type': 'server_error'}})}\n\n".encode()

    def end(self, reason: str, usage: list[int] | None) -> bytes:
        prompt, completion = usage or (self.words, self.parts)
        usage_chunk = json.loads(self._chunk({}, choices=False)[6:])
        usage_chunk["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return self._chunk({}, reason) + f"data: {json.dumps(usage_chunk)}\n\ndata: [DONE]\n\n".encode()


class AnthropicWire(Wire):
    """Messages API events: message_start, content_block_*, message_delta, message_stop."""

    LENGTH = "max_tokens"

    @staticmethod
    def _event(name: str, data: dict) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

    def begin(self) -> bytes:
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.words, "output_tokens": 1},
        }
        self.index, self.open = -1, None
        return (
            self._event("message_start", {"message": message}) + self._block("text") + self._event("ping", {})
        )

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        out = b""
        if self.open == "thinking":  # its signature comes just before the block closes
            signature = {"type": "signature_delta", "signature": f"sig-{self.index}"}
            out = self._event("content_block_delta", {"index": self.index, "delta": signature})
        self.open = None
        return out + self._event("content_block_stop", {"index": self.index})

    def _block(self, kind: str, **fields) -> bytes:
        """Open a block of this kind unless one is open (a tool_use block always opens)."""
        if self.open == kind and kind != "tool_use":
            return b""
        out = self._close()
        self.index += 1
        self.open = kind
        empty = {"text": {"text": ""}, "thinking": {"thinking": ""}, "tool_use": {"input": {}}}[kind]
        block = {"type": kind, **empty, **fields}
        return out + self._event("content_block_start", {"index": self.index, "content_block": block})

    def text(self, text: str) -> bytes:
        self.parts += 1
        delta = {"type": "text_delta", "text": text}
        return self._block("text") + self._event("content_block_delta", {"index": self.index, "delta": delta})

    def reasoning(self, text: str, field: str) -> bytes:
        self.parts += 1
        delta = {"type": "thinking_delta", "thinking": text}
        return self._block("thinking") + self._event(
            "content_block_delta", {"index": self.index, "delta": delta}
        )

    def call(self, name: str, call_id: str, fragments: list[str]) -> Iterator[bytes]:
        yield self._block("tool_use", id=call_id, name=name)
        for fragment in fragments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            yield self._event("content_block_delta", {"index": self.index, "delta": delta})

    def error(self, kind: str) -> bytes:
        return self._event("error", {"error": {"type": f"{kind}_error", "message": kind}})

    def end(self, reason: str, usage: list[int] | None) -> bytes:
        output = usage[1] if usage else self.parts
        return (
            self._close()
            + self._event(
                "message_delta",
                {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": {"output_tokens": output}},
            )
            + self._event("message_stop", {})
        )


def _played(steps: list[dict]) -> Iterator[dict]:
    for step in steps:
        if "repeat" in step:
            while True:
                yield {"say": step["repeat"]}
        yield step


def _output_limit(request: Request) -> int | None:
    body = request.body or {}
    return next((body[k] for k in ("max_tokens", "max_completion_tokens") if k in body), None)


def _unsupported_body(name: str) -> dict:
    """OpenAI's answer to `max_tokens` for its newer models, word for word but the names."""
    other = "max_completion_tokens" if name == "max_tokens" else "max_tokens"
    return {
        "error": {
            "message": f"Unsupported parameter: '{name}' is not supported with this model. "
            f"Use '{other}' instead.",
            "type": "invalid_request_error",
            "param": name,
            "code": "unsupported_parameter",
        }
    }


def _last_tool_result(body: dict) -> str:
    """The content of the last tool result in a request, in either vendor's format."""
    results = [m["content"] for m in body.get("messages", []) if m.get("role") == "tool"]
    for message in body.get("messages", []):
        blocks = message.get("content") if isinstance(message.get("content"), list) else []
        results += [b["content"] for b in blocks if b.get("type") == "tool_result"]
    return str(results[-1]) if results else "no tool result"


def _error_body(server: VendorServer, status: int, quoted: str | None = None) -> dict:
    kind = ERROR_TYPES[server.vendor].get(status, "api_error")
    # As OpenAI does, a 401 quotes the key it was given: it must go no further than here.
    key = next(
        (r.headers.get("authorization") or r.headers.get("x-api-key") for r in server.requests[-1:]), ""
    )
    message = f"Incorrect API key provided: {key}" if status == 401 else f"fake {status}"
    message = quoted if quoted is not None else message
    if server.vendor == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": None}}


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    raw = await reader.readexactly(int(headers.get("content-length", 0)))
    return Request(method, path, headers, json.loads(raw) if raw else None)


async def _send_json(writer: asyncio.StreamWriter, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    writer.write(head.encode() + data)
    await writer.drain()


async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
    await writer.drain()


def collect(provider, prompt, timeout: float = 5.0) -> tuple[list, object]:
    """Run a provider's stream to its end on a loop of its own: (items, the error raised or None)."""
    from chat.providers import ProviderError

    async def go():
        items = []
        try:
            async for item in provider.stream(prompt):
                items.append(item)
        except ProviderError as exc:
            return items, exc
        return items, None

    async def bounded():
        return await asyncio.wait_for(go(), timeout)

    return asyncio.run(bounded())
