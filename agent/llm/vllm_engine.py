"""The vLLM engine: an OpenAI-compatible vLLM server reached over HTTP.

Each ranking is one chat completion with ``max_tokens=1`` that asks for the log-probabilities
of exactly the label tokens (``logprob_token_ids``): every candidate gets a score from the full
vocabulary distribution, whatever the top-k would have held. Requests run concurrently so the
server can batch them (continuous batching is where vLLM earns its keep).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.llm.engine import EngineError, Message, check_adapter

BASE_MODEL_NAME = "base"  # --served-model-name of the base checkpoint; adapters go by their own names


class VLLMEngine:
    def __init__(self, url: str, adapters: dict[str, Path] | None = None, concurrency: int = 8,
                 timeout: float = 60.0):
        import httpx

        self.url = url.rstrip("/")
        self.adapters = dict(adapters or {})
        self.concurrency = concurrency
        self.client = httpx.Client(base_url=self.url, timeout=timeout)
        self._label_ids: dict[str, int] = {}

    def _post(self, path: str, body: dict) -> dict:
        import httpx

        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as e:
            raise EngineError(f"vLLM server at {self.url} unreachable: {e}") from e
        if response.status_code != 200:
            raise EngineError(f"vLLM {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def label_ids(self, labels: Sequence[str]) -> list[int]:
        for label in labels:
            if label not in self._label_ids:
                tokens = self._post("/tokenize", {"model": BASE_MODEL_NAME, "prompt": label,
                                                  "add_special_tokens": False})["tokens"]
                if len(tokens) != 1:
                    raise ValueError(f"label {label!r} is {len(tokens)} tokens; labels must be one token")
                self._label_ids[label] = tokens[0]
        return [self._label_ids[label] for label in labels]

    def _one(self, conversation: list[Message], ids: list[int], model: str) -> list[float]:
        body = {
            "model": model, "messages": conversation, "max_tokens": 1, "temperature": 0.0,
            "logprobs": True, "logprob_token_ids": ids, "return_tokens_as_token_ids": True,
        }
        content = self._post("/v1/chat/completions", body)["choices"][0]["logprobs"]["content"][0]
        got = {int(t["token"].removeprefix("token_id:")): t["logprob"] for t in content["top_logprobs"]}
        missing = [i for i in ids if i not in got]
        if missing:
            raise EngineError(f"vLLM returned no logprob for label tokens {missing}")
        return [got[i] for i in ids]

    def label_logprobs(
        self, conversations: Sequence[list[Message]], labels: Sequence[str], adapter: str | None = None
    ) -> list[list[float]]:
        check_adapter(adapter, self.adapters)
        ids = self.label_ids(labels)
        model = adapter or BASE_MODEL_NAME
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda c: self._one(c, ids, model), conversations))

    def generate(
        self, conversations: Sequence[list[Message]], max_tokens: int = 64, adapter: str | None = None,
        temperature: float = 0.0, json_schema: dict | None = None,
    ) -> list[str]:
        check_adapter(adapter, self.adapters)
        body = {"model": adapter or BASE_MODEL_NAME, "max_tokens": max_tokens, "temperature": temperature}
        if json_schema is not None:
            body["structured_outputs"] = {"json": json_schema}  # vLLM >= 0.12 (guided_json is gone)

        def one(conversation: list[Message]) -> str:
            reply = self._post("/v1/chat/completions", {**body, "messages": conversation})
            return reply["choices"][0]["message"]["content"] or ""

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, conversations))

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
