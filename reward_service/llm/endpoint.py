"""`HttpLLM`: a client of an OpenAI-compatible `/v1/completions` endpoint (`vllm serve`, ...)."""
from __future__ import annotations

import http.client
import json
import math
import os
import socket
import threading
import time
import urllib.parse

from reward_service.llm.base import BadReply, LLMError, PromptError, Rejected, cut_at_stop

_REFUSED = (400, 413, 422)  # the request itself is bad: it will be refused again
_ERROR_BODY_BYTES = 4096  # how much of an error reply is read, for its message


class HttpLLM:
    """A client of an OpenAI-compatible `/v1/completions` endpoint (`vllm serve` and others).

    Every attempt must complete within `timeout_s` (connect, send, headers and body together:
    a server that drips bytes cannot hold a judge). Timeouts, connection failures, 429 and 5xx
    are retried with exponential backoff; a refused request (400, 413, 422) is split to find
    the prompts the server refuses, which fail alone; other 4xx, redirects (never followed: the
    API key goes to the endpoint only) and replies over `max_reply_mb` fail at once. Only
    http:// and https:// endpoints are accepted. The prompt text is sent as is: give
    `prompt_template` (with `{prompt}`) to wrap it in a chat format.
    """

    def __init__(self, endpoint: str, model_name: str | None = None, timeout_s: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5, api_key: str | None = None,
                 prompt_template: str | None = None, max_batch: int = 64,
                 max_reply_mb: float = 64.0):
        self.url = completions_url(endpoint)
        for name, value, low in (("timeout_s", timeout_s, 0), ("max_reply_mb", max_reply_mb, 0)):
            if not (math.isfinite(value) and value > low):
                raise ValueError(f"{name} must be a finite number > {low}, got {value!r}")
        if not (math.isfinite(backoff_s) and backoff_s >= 0):
            raise ValueError(f"backoff_s must be a finite number >= 0, got {backoff_s!r}")
        if retries < 0 or max_batch < 1:
            raise ValueError(f"retries must be >= 0 and max_batch >= 1, got {retries}, {max_batch}")
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        # A dedicated variable: a general OpenAI key is never sent to a cluster endpoint unasked.
        self.api_key = api_key or os.environ.get("THOUGHTRL_JUDGE_API_KEY")
        self.prompt_template = prompt_template
        self.max_batch = max_batch
        self.max_reply_mb = max_reply_mb
        self._model_name = model_name
        self.requests = 0  # attempts made, retries included (for tests and metrics)

    @property
    def model_name(self) -> str:
        if self._model_name is None:  # vllm serve names one model; ask it which
            models = self._call("GET", self.url.rsplit("/completions", 1)[0] + "/models", None)
            try:
                self._model_name = models["data"][0]["id"]
            except (KeyError, IndexError, TypeError):
                raise LLMError(f"cannot tell the model name from {models!r}; set model_name")
        return self._model_name

    def format(self, user: str) -> str:
        return self.prompt_template.replace("{prompt}", user) if self.prompt_template else user

    def generate(self, prompts, n=1, temperature=0.0, max_tokens=256, stop=None, seed=None):
        copies, n = (n, 1) if temperature == 0 else (1, n)  # vLLM refuses n > 1 when greedy
        body = {"n": n, "temperature": temperature, "max_tokens": max_tokens}
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed

        def texts(i: int, choices: list[dict]) -> list[str]:
            return [cut_at_stop(str(c.get("text", "")), stop) for c in choices] * copies
        return self._answer_all(prompts, body, n, texts)

    def choice_logprobs(self, prompts, choices):
        # Echo prompt + choice with its logprobs and no generation (the scoring call of
        # lm-eval-harness); sum the tokens that cover the choice's characters.
        full = [p + c for p in prompts for c in choices]
        heads = [len(p) for p in prompts for _ in choices]
        body = {"max_tokens": 0, "echo": True, "logprobs": 0, "temperature": 0.0}
        try:
            flat = self._answer_all(full, body, 1,
                                    lambda i, cs: _continuation_logprob(cs[0], heads[i]))
            failed = {}
        except PromptError as e:
            flat, failed = e.answers, e.failed
        m = len(choices)
        by_prompt = {j // m: e for j, e in sorted(failed.items(), reverse=True)}
        answers = [None if i in by_prompt else flat[i * m:(i + 1) * m] for i in range(len(prompts))]
        if by_prompt:
            raise PromptError.of(by_prompt, answers)
        return answers

    def _answer_all(self, prompts: list[str], body: dict, k: int, parse) -> list:
        """Each prompt's answer, `parse(index, its k choices)`, asked `max_batch` prompts per
        request. A request the server refuses is split in halves until the refused prompts are
        alone; they, and prompts whose reply `parse` cannot use, fail alone (`PromptError`)."""
        answers: list = [None] * len(prompts)
        failed: dict[int, PromptError] = {}

        def ask(lo: int, hi: int) -> None:
            try:
                choices = self._choices({**body, "prompt": prompts[lo:hi]}, (hi - lo) * k)
            except Rejected as e:
                if hi - lo == 1:
                    failed[lo] = e
                else:
                    ask(lo, (lo + hi) // 2)
                    ask((lo + hi) // 2, hi)
                return
            for i in range(lo, hi):
                try:
                    answers[i] = parse(i, choices[(i - lo) * k:(i - lo + 1) * k])
                except BadReply as e:
                    failed[i] = e

        for lo in range(0, len(prompts), self.max_batch):
            ask(lo, min(lo + self.max_batch, len(prompts)))
        if failed:
            raise PromptError.of(failed, answers)
        return answers

    def _choices(self, body: dict, expected: int) -> list[dict]:
        reply = self._call("POST", self.url, {"model": self.model_name, **body})
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list) or len(choices) != expected or not all(
                isinstance(c, dict) and isinstance(c.get("index", 0), int) for c in choices):
            raise LLMError(f"expected {expected} choices from {self.url}, got "
                           f"{len(choices) if isinstance(choices, list) else repr(reply)[:200]}")
        return sorted(choices, key=lambda c: c.get("index", 0))

    def _call(self, method: str, url: str, body: dict | None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.requests += 1
            try:
                status, payload, location = self._fetch(method, url, data, headers)
            except (OSError, http.client.HTTPException) as e:  # timeouts and refusals included
                last = f"{type(e).__name__}: {e}"
                continue
            detail = payload[:300].decode(errors="replace")
            if 300 <= status < 400:
                raise LLMError(f"{url}: HTTP {status} redirect to {location!r} not followed (the "
                               "API key is sent to the endpoint only); give the final URL")
            if status == 429 or status >= 500:
                last = f"HTTP {status}: {detail}"
                continue
            if status in _REFUSED:
                raise Rejected(f"{url}: HTTP {status}: {detail}")
            if status >= 400:
                raise LLMError(f"{url}: HTTP {status}: {detail}")
            try:
                return json.loads(payload)
            except ValueError:
                last = f"not JSON: {payload[:200]!r}"
        raise LLMError(f"{url}: failed after {self.retries + 1} attempts ({last})")

    def _fetch(self, method: str, url: str, data: bytes | None,
               headers: dict) -> tuple[int, bytes, str | None]:
        """One attempt: (status, body, redirect target), all of it within `timeout_s`."""
        parts = urllib.parse.urlsplit(url)
        secure = parts.scheme == "https"
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        conn = kind(parts.hostname, parts.port or (443 if secure else 80), timeout=self.timeout_s)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        start = time.monotonic()
        try:
            conn.connect()  # one socket operation: bounded by the socket timeout
            deadline = _Deadline(conn.sock, self.timeout_s - (time.monotonic() - start))
            try:
                with deadline:
                    conn.request(method, target, body=data, headers=headers)
                    response = conn.getresponse()
                    limit = (int(self.max_reply_mb * 2**20) if response.status < 300
                             else _ERROR_BODY_BYTES)
                    payload = _read(response, limit, refuse=response.status < 300,
                                    what=f"{self.max_reply_mb:g} MB (max_reply_mb)")
            except (OSError, http.client.HTTPException):
                if not deadline.expired:
                    raise
            if deadline.expired:  # what was read may be cut short
                raise TimeoutError(f"no complete reply within {self.timeout_s:g} s")
            return response.status, payload, response.getheader("Location")
        finally:
            conn.close()


class _Deadline:
    """Shuts a socket down once `seconds` have passed, which ends any read blocked on it."""

    def __init__(self, sock: socket.socket, seconds: float):
        self.sock, self.expired, self._over = sock, False, False
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.expired = True
        try:  # the plain socket's shutdown, also under TLS (SSLSocket's would drop its state)
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            self._over = True


def _read(response: http.client.HTTPResponse, limit: int, refuse: bool, what: str) -> bytes:
    """The body, read no further than `limit` bytes: past it, an LLMError if `refuse`, else
    the first `limit` bytes (an error reply, read for its message)."""
    declared = response.getheader("Content-Length") or ""
    if refuse and declared.isdigit() and int(declared) > limit:
        raise LLMError(f"a reply of {int(declared)} bytes is larger than {what}")
    chunks, size = [], 0
    while size <= limit:
        chunk = response.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    if refuse:
        raise LLMError(f"a reply larger than {what}")
    return b"".join(chunks)[:limit]


def completions_url(endpoint: str) -> str:
    parts = urllib.parse.urlsplit(str(endpoint))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint {endpoint!r} must be an http:// or https:// URL with a host")
    url = str(endpoint).rstrip("/")
    if url.endswith("/completions"):
        return url
    return url + ("/completions" if url.endswith("/v1") else "/v1/completions")


def _continuation_logprob(choice: dict, prompt_chars: int) -> float:
    try:
        lp = choice["logprobs"]
        rows = list(zip(lp["text_offset"], lp["tokens"], lp["token_logprobs"]))
    except (KeyError, TypeError):
        raise BadReply("the server returned no echoed logprobs (needs echo + logprobs support)")
    total, covered = 0.0, False
    for offset, token, logp in rows:
        if not isinstance(offset, int) or not isinstance(token, str):
            raise BadReply(f"malformed echoed token {token!r} at offset {offset!r}")
        if offset + len(token) > prompt_chars:  # a token that covers part of the choice
            if not isinstance(logp, (int, float)) or isinstance(logp, bool) \
                    or not math.isfinite(logp):
                raise BadReply(f"the server gave the logprob {logp!r} for a choice token")
            total += float(logp)
            covered = True
    if not covered:
        raise BadReply("no echoed token covers the choice text")
    return total
