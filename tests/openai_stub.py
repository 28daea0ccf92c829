"""A small OpenAI-compatible completion server on loopback, for testing the HTTP LLM client.

It speaks the `/v1/completions` and `/v1/models` wire format the way `vllm serve` does
(choices indexed prompt-major, `echo` + `logprobs` with `text_offset`, greedy requests for
n > 1 refused, a request with a prompt longer than `max_prompt_chars` refused whole with 400),
with one token per character. Replies come from `reply(prompt, sample_index)`; echoed text gets
per-character logprobs from `char_logprob(text_before, char)` (a NaN goes out as `NaN`, as
Python's and some servers' JSON writers emit it). `bodies` and `headers` record every request.

`faults` is a queue of what the next requests do instead of answering:
"500", "400", "garbage", "sleep:S" (answer after S seconds), "drip:S" (a 200 whose body comes
one byte every S seconds), "drip-headers:S" (the header lines one byte every S seconds),
"huge:N" / "huge-chunked:N" (a 200 of N bytes, with or without Content-Length), "huge-error:N"
(a 500 of N bytes), "redirect:URL" (a 302 to URL). `sent` counts the body bytes each streamed
fault got out before the client hung up.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

MODEL = "stub-judge"
_CHUNK = 64 * 1024


class OpenAIStub:
    def __init__(self, reply: Callable[[str, int], str] = lambda prompt, j: "",
                 char_logprob: Callable[[str, str], float] = lambda before, ch: -1.0,
                 max_prompt_chars: int | None = None):
        self.reply, self.char_logprob = reply, char_logprob
        self.max_prompt_chars = max_prompt_chars
        self.faults: list[str] = []
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.sent: list[int] = []
        self.lock = threading.Lock()
        self.streamed = threading.Condition(self.lock)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "OpenAIStub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_streamed(self, count: int, timeout_s: float = 60.0) -> list[int]:
        """`sent` once `count` streamed faults have finished (the server saw the end)."""
        with self.streamed:
            if not self.streamed.wait_for(lambda: len(self.sent) >= count, timeout_s):
                raise TimeoutError(f"only {len(self.sent)} of {count} streams finished")
            return list(self.sent)

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def completions(self, body: dict) -> dict:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        n = int(body.get("n", 1))
        choices = []
        for i, prompt in enumerate(prompts):
            for j in range(n):
                choice = {"index": i * n + j, "finish_reason": "stop", "logprobs": None}
                if body.get("echo") and body.get("max_tokens") == 0:
                    choice["text"] = prompt
                    if body.get("logprobs") is not None:
                        choice["logprobs"] = self._echo_logprobs(prompt)
                else:
                    text = self.reply(prompt, j)
                    choice["text"] = text[: int(body.get("max_tokens", 16))]
                choices.append(choice)
        # Out of order on purpose: clients must place choices by their index.
        return {"id": "cmpl-stub", "object": "text_completion", "model": MODEL,
                "choices": choices[::-1]}

    def _echo_logprobs(self, text: str) -> dict:
        return {"tokens": list(text), "text_offset": list(range(len(text))),
                "token_logprobs": [None] + [self.char_logprob(text[:k], text[k])
                                            for k in range(1, len(text))],
                "top_logprobs": None}


def _handler(stub: OpenAIStub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, code: int, payload: bytes, headers: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self, code: int, size: int, length: bool, every_s: float = 0.0) -> None:
            """`size` body bytes (one at a time every `every_s` seconds if given) until done
            or the client hangs up; how many got out is appended to `stub.sent`."""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            if length:
                self.send_header("Content-Length", str(size))
            self.send_header("Connection", "close")
            self.end_headers()
            sent, piece = 0, 1 if every_s else _CHUNK
            try:
                while sent < size:
                    self.wfile.write(b" " * min(piece, size - sent))
                    self.wfile.flush()
                    sent += min(piece, size - sent)
                    if every_s:
                        time.sleep(every_s)
            except OSError:  # the client hung up
                pass
            with stub.streamed:
                stub.sent.append(sent)
                stub.streamed.notify_all()
            self.close_connection = True

        def _drip_headers(self, every_s: float) -> None:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"x" * 10_000
            try:
                for byte in head:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(every_s)
            except OSError:
                pass
            self.close_connection = True

        def _record(self) -> None:
            with stub.lock:
                stub.headers.append(dict(self.headers.items()))

        def do_GET(self):
            self._record()
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, json.dumps({"data": [{"id": MODEL}]}).encode())
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self):
            self._record()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with stub.lock:
                stub.bodies.append(body)
            fault = stub.next_fault() or ""
            kind, _, arg = fault.partition(":")
            if kind == "500":
                return self._send(500, b'{"error": "overloaded"}')
            if kind == "400":
                return self._send(400, b'{"error": "bad request"}')
            if kind == "garbage":
                return self._send(200, b"<html>not json")
            if kind == "sleep":
                time.sleep(float(arg))
            if kind == "drip":
                return self._stream(200, 10**6, length=True, every_s=float(arg))
            if kind == "drip-headers":
                return self._drip_headers(float(arg))
            if kind in ("huge", "huge-chunked"):
                return self._stream(200, int(arg), length=kind == "huge")
            if kind == "huge-error":
                return self._stream(500, int(arg), length=True)
            if kind == "redirect":
                return self._send(302, b"", {"Location": arg})
            if self.path.rstrip("/") != "/v1/completions":
                return self._send(404, b'{"error": "not found"}')
            if int(body.get("n", 1)) > 1 and body.get("temperature", 1.0) == 0:  # as vLLM does
                return self._send(400, b'{"error": "n must be 1 when using greedy sampling"}')
            if body.get("model") != MODEL:
                return self._send(404, json.dumps({"error": f"no model {body.get('model')}"}).encode())
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            limit = stub.max_prompt_chars
            if limit is not None and any(len(p) > limit for p in prompts):
                return self._send(400, json.dumps({"error": "This model's maximum context "
                                                   f"length is {limit} tokens."}).encode())
            self._send(200, json.dumps(stub.completions(body)).encode())

    return Handler
