"""In-process engine: transformers (+ peft adapters). The light path for tests and for machines
without vLLM; the same numbers as the vLLM engine for the same model, prompt and adapter."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from agent.llm.engine import Message, check_adapter, prompt_ids, single_token_ids


class TransformersEngine:
    def __init__(
        self,
        model_dir: Path,
        adapters: dict[str, Path] | None = None,
        dtype: str = "bfloat16",
        batch_size: int = 8,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.adapters = dict(adapters or {})
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"  # the answer's first token is read at the last position
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        if self.adapters:
            from peft import PeftModel

            names = list(self.adapters)
            model = PeftModel.from_pretrained(model, self.adapters[names[0]], adapter_name=names[0])
            for name in names[1:]:
                model.load_adapter(self.adapters[name], adapter_name=name)
        self.model = model.eval()
        # One call at a time: the active adapter is model state, and the service calls from threads.
        self._lock = threading.Lock()

    def load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        with self._lock:
            if name in self.adapters:
                raise ValueError(f"adapter {name!r} is already loaded")
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name).eval()
            self.adapters[name] = Path(path)

    def label_logprobs(
        self, conversations: Sequence[list[Message]], labels: Sequence[str], adapter: str | None = None
    ) -> list[list[float]]:
        import torch

        check_adapter(adapter, self.adapters)
        label_ids = single_token_ids(self.tokenizer, labels)
        out: list[list[float]] = []
        for start in range(0, len(conversations), self.batch_size):
            batch = [{"input_ids": prompt_ids(self.tokenizer, c)}
                     for c in conversations[start:start + self.batch_size]]
            enc = self.tokenizer.pad(batch, return_tensors="pt")
            with self._lock, torch.inference_mode(), self._adapter(adapter):
                logits = self.model(**enc, logits_to_keep=1).logits[:, -1].float()
            out += torch.log_softmax(logits, -1)[:, label_ids].tolist()
        return out

    def generate(
        self, conversations: Sequence[list[Message]], max_tokens: int = 64, adapter: str | None = None,
        temperature: float = 0.0, json_schema: dict | None = None,
    ) -> list[str]:
        """Greedy (or sampled) replies. transformers has no constrained decoding here, so
        ``json_schema`` is not enforced: callers validate what comes back."""
        import torch

        check_adapter(adapter, self.adapters)
        out: list[str] = []
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        for start in range(0, len(conversations), self.batch_size):
            batch = [{"input_ids": prompt_ids(self.tokenizer, c)}
                     for c in conversations[start:start + self.batch_size]]
            enc = self.tokenizer.pad(batch, return_tensors="pt")
            with self._lock, torch.inference_mode(), self._adapter(adapter):
                ids = self.model.generate(**enc, max_new_tokens=max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                          top_p=None, top_k=None, **sampling)
            width = enc["input_ids"].shape[1]
            out += self.tokenizer.batch_decode(ids[:, width:], skip_special_tokens=True)
        return out

    def _adapter(self, name: str | None):
        from contextlib import nullcontext

        if not self.adapters:
            return nullcontext()
        if name is None:
            return self.model.disable_adapter()
        self.model.set_adapter(name)
        return nullcontext()

    def close(self) -> None:
        pass
