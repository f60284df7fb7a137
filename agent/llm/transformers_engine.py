"""In-process engine: transformers (+ peft adapters). The light path for tests, for machines
without vLLM, and for the ranker on a CPU (a merged checkpoint, ``agent/llm/merged.py``); the
same numbers as the vLLM engine for the same model, prompt and adapter.

Texts (``complete``) follow the rules vLLM's grammar enforces: tokens that hold a double quote
or a line break are banned, and a sequence stops once it has written the whole sentences it
was allowed. Sequences are generated in batches, the shortest jobs first; between steps the
engine checks the deadline and the cancel flag, so abandoned work stops within one step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent.llm.engine import (
    FREQUENCY_PENALTY,
    Message,
    TextJob,
    TextResult,
    complete_sentences,
    prompt_ids,
    single_token_ids,
    text_result,
)
from agent.llm.hardware import resolve_dtype
from agent.llm.registry import check_adapter


def continuation_ids(tokenizer, job: TextJob) -> list[int]:
    """Token ids of a text job's prompt: the chat so far and, when Muse began the answer, its
    first words (the model continues them)."""
    if not job.prefix:
        return prompt_ids(tokenizer, job.messages)
    ids = tokenizer.apply_chat_template(
        job.messages + [{"role": "assistant", "content": job.prefix}], continue_final_message=True, tokenize=True
    )
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _sampling(temperature: float, seed: int) -> dict:
    """``generate``'s sampling arguments: greedy at temperature 0, else sampled from ``seed``."""
    if temperature <= 0:
        return {"do_sample": False}
    import torch

    torch.manual_seed(seed)
    return {"do_sample": True, "temperature": temperature}


class TransformersEngine:
    def __init__(
        self,
        model_dir: Path,
        adapters: dict[str, Path] | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.adapters = dict(adapters or {})
        self.batch_size = batch_size
        self.dtype = resolve_dtype(dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"  # the answer's first token is read at the last position
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, self.dtype))
        if self.adapters:
            from peft import PeftModel

            names = list(self.adapters)
            model = PeftModel.from_pretrained(model, self.adapters[names[0]], adapter_name=names[0])
            for name in names[1:]:
                model.load_adapter(self.adapters[name], adapter_name=name)
        self.model = model.eval()
        # One call at a time: the active adapter is model state, and the service calls from threads.
        self._lock = threading.Lock()
        self._banned = None

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
        self,
        conversations: Sequence[list[Message]],
        labels: Sequence[str],
        adapter: str | None = None,
        timeout: float | None = None,
    ) -> list[list[float]]:
        """``timeout`` is accepted for the interface's sake: a forward pass in-process cannot be
        interrupted, and it takes well under a second per batch for the packaged model."""
        import torch

        check_adapter(adapter, self.adapters)
        label_ids = single_token_ids(self.tokenizer, labels)
        out: list[list[float]] = []
        for start in range(0, len(conversations), self.batch_size):
            batch = [
                {"input_ids": prompt_ids(self.tokenizer, c)} for c in conversations[start : start + self.batch_size]
            ]
            enc = self.tokenizer.pad(batch, return_tensors="pt")
            with self._lock, torch.inference_mode(), self._adapter(adapter):
                logits = self.model(**enc, logits_to_keep=1).logits[:, -1].float()
            out += torch.log_softmax(logits, -1)[:, label_ids].tolist()
        return out

    def generate(
        self,
        conversations: Sequence[list[Message]],
        max_tokens: int = 64,
        adapter: str | None = None,
        temperature: float = 0.0,
        json_schema: dict | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        """Greedy (or sampled) replies. transformers has no constrained decoding here, so
        ``json_schema`` is not enforced: callers validate what comes back."""
        import torch

        check_adapter(adapter, self.adapters)
        out: list[str] = []
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        for start in range(0, len(conversations), self.batch_size):
            batch = [
                {"input_ids": prompt_ids(self.tokenizer, c)} for c in conversations[start : start + self.batch_size]
            ]
            enc = self.tokenizer.pad(batch, return_tensors="pt")
            with self._lock, torch.inference_mode(), self._adapter(adapter):
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    top_p=None,
                    top_k=None,
                    **sampling,
                )
            width = enc["input_ids"].shape[1]
            out += self.tokenizer.batch_decode(ids[:, width:], skip_special_tokens=True)
        return out

    def banned_token_ids(self) -> list[int]:
        """Vocabulary entries holding a double quote or a line break (never in a continuation)."""
        if self._banned is None:
            vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            self._banned = [
                i
                for i, token in enumerate(vocab)
                if any(ch in self.tokenizer.convert_tokens_to_string([token]) for ch in '"\n')
            ]
        return self._banned

    def word_token_ids(self, words: Sequence[str]) -> list[int]:
        """The tokens a continuation restricted to ``words`` (``TextJob.words``) may use: those
        that write each word, lower-case or capitalized, with or without a leading space or a
        possessive, and the joins and sentence ends. Words put together from these tokens can
        still form a word outside the list (the vLLM grammar forbids that exactly); the support
        check behind it rejects such a text."""
        forms = [
            f"{space}{case}{tail}"
            for w in words
            for case in (w, w[:1].upper() + w[1:])
            for space in ("", " ")
            for tail in ("", "'s")
        ]
        ids = {
            i
            for form in forms + [",", ";", "-", " -", ".", "!", "?"]
            for i in self.tokenizer.encode(form, add_special_tokens=False)
        }
        return sorted(ids)

    def allowed_mask(self, jobs: Sequence[TextJob]):
        """A bool tensor (len(jobs) x vocabulary): True at the tokens each job may write
        (``word_token_ids`` of its ``words``; every token for a job without ``spans``); None when
        no job restricts its words."""
        import torch

        if not any(job.spans for job in jobs):
            return None
        keep = torch.zeros(len(jobs), len(self.tokenizer), dtype=torch.bool)
        for row, job in enumerate(jobs):
            if job.spans:
                keep[row, self.word_token_ids(job.words)] = True
            else:
                keep[row] = True
        return keep

    def complete(
        self,
        jobs: Sequence[TextJob],
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> Iterator[tuple[int, TextResult]]:
        import torch
        from transformers import (
            LogitsProcessor,
            LogitsProcessorList,
            StoppingCriteria,
            StoppingCriteriaList,
        )

        tokenizer = self.tokenizer
        banned = torch.tensor(self.banned_token_ids())

        def halted() -> bool:
            return time.monotonic() >= deadline or (cancel is not None and cancel.is_set())

        class Rules(LogitsProcessor):
            """Banned tokens, each row's allowed tokens (``keep``: rows x vocabulary, True where
            allowed, or None when every row may write anything), and the frequency penalty on
            what the continuation already holds."""

            def __init__(self, width: int, keep):
                self.width, self.keep = width, keep

            def __call__(self, input_ids, scores):
                written = input_ids[:, self.width :]
                if written.shape[1]:
                    counts = torch.zeros_like(scores).scatter_add_(
                        1, written, torch.ones_like(written, dtype=scores.dtype)
                    )
                    scores = scores - FREQUENCY_PENALTY * counts
                scores[:, banned] = float("-inf")
                if self.keep is not None:  # (the model's rows past the tokenizer's vocabulary: never)
                    width = self.keep.shape[1]
                    scores[:, :width] = scores[:, :width].masked_fill(~self.keep, float("-inf"))
                    scores[:, width:] = float("-inf")
                return scores

        class Sentences(StoppingCriteria):
            """A row is done once it holds ``limit`` whole sentences; all rows stop when the
            deadline passes or the caller cancels."""

            def __init__(self, width: int, limit: int):
                self.width, self.limit = width, limit

            def __call__(self, input_ids, scores, **kwargs):
                if halted():
                    return torch.ones(input_ids.shape[0], dtype=torch.bool)
                texts = tokenizer.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
                return torch.tensor([complete_sentences(t)[1] >= self.limit for t in texts])

        for (max_tokens, sentences, _, adapter, temperature, seed), rows in self._groups(jobs):
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                if halted():
                    return
                enc = tokenizer.pad(
                    [{"input_ids": continuation_ids(tokenizer, jobs[r])} for r in batch], return_tensors="pt"
                )
                width = enc["input_ids"].shape[1]
                avoid = [tokenizer.encode(form, add_special_tokens=False) for form in jobs[batch[0]].avoided_forms()]
                keep = self.allowed_mask([jobs[r] for r in batch])
                with self._lock, torch.inference_mode(), self._adapter(adapter or None):
                    ids = self.model.generate(
                        **enc,
                        max_new_tokens=max_tokens,
                        **_sampling(temperature, seed),
                        top_p=None,
                        top_k=None,
                        bad_words_ids=avoid or None,
                        pad_token_id=tokenizer.pad_token_id,
                        logits_processor=LogitsProcessorList([Rules(width, keep)]),
                        stopping_criteria=StoppingCriteriaList([Sentences(width, sentences)]),
                    )
                if halted():
                    return
                written = ids[:, width:]
                read = enc["attention_mask"].sum(dim=1).tolist()
                wrote = (written != tokenizer.pad_token_id).sum(dim=1).tolist()
                for row, (r, text) in enumerate(zip(batch, tokenizer.batch_decode(written, skip_special_tokens=True))):
                    yield r, text_result(text, int(read[row]), int(wrote[row]))

    def _groups(self, jobs: Sequence[TextJob]) -> list[tuple[tuple, list[int]]]:
        """Jobs that can share one ``generate`` call (token bound, sentences, banned words,
        adapter, sampling) with their indices, the shortest texts first. Raises
        ``UnknownAdapterError`` for a job's adapter outside the allow-list."""
        groups: dict[tuple, list[int]] = {}
        for n, job in enumerate(jobs):
            check_adapter(job.adapter, self.adapters)
            key = (job.max_tokens, job.sentences, job.avoid, job.adapter or "", job.temperature, job.seed or 0)
            groups.setdefault(key, []).append(n)
        return sorted(groups.items())

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
