"""A small OpenAI-compatible completion server on loopback, for testing the HTTP LLM client.

It speaks the `/v1/completions` and `/v1/models` wire format the way `vllm serve` does
(choices indexed prompt-major, `echo` + `logprobs` with `text_offset`, greedy requests for
n > 1 refused), with one token per character. Replies come from `reply(prompt, sample_index)`;
echoed text gets per-character logprobs from `char_logprob(text_before, char)`. `faults` is a
queue of what the next requests do instead of answering: "500", "400", "sleep:S" (answer
after S seconds) or "garbage".
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

MODEL = "stub-judge"


class OpenAIStub:
    def __init__(self, reply: Callable[[str, int], str] = lambda prompt, j: "",
                 char_logprob: Callable[[str, str], float] = lambda before, ch: -1.0):
        self.reply, self.char_logprob = reply, char_logprob
        self.faults: list[str] = []
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
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

        def _send(self, code: int, payload: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, json.dumps({"data": [{"id": MODEL}]}).encode())
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with stub.lock:
                stub.bodies.append(body)
            fault = stub.next_fault()
            if fault == "500":
                return self._send(500, b'{"error": "overloaded"}')
            if fault == "400":
                return self._send(400, b'{"error": "bad request"}')
            if fault == "garbage":
                return self._send(200, b"<html>not json")
            if fault and fault.startswith("sleep:"):
                time.sleep(float(fault.split(":")[1]))
            if self.path.rstrip("/") != "/v1/completions":
                return self._send(404, b'{"error": "not found"}')
            if int(body.get("n", 1)) > 1 and body.get("temperature", 1.0) == 0:  # as vLLM does
                return self._send(400, b'{"error": "n must be 1 when using greedy sampling"}')
            if body.get("model") != MODEL:
                return self._send(404, json.dumps({"error": f"no model {body.get('model')}"}).encode())
            self._send(200, json.dumps(stub.completions(body)).encode())

    return Handler
