"""Does this machine's vLLM (the CPU build) take a ranking prompt as embeddings? (issue 16)

    .venv/bin/python docs/prompt_embeds_probe.py [--prompts 20]

Starts vLLM with the packaged model and ``--enable-prompt-embeds``, builds ranking prompts
from the demo catalog (``agent.bench.rank.demo_conversations``), and asks for the label
log-probabilities twice per prompt: as token ids through the completions API (``prompt``), and
as the same tokens' input embeddings (the model's own embedding rows, ``prompt_embeds``). The
two should agree to rounding; the hybrid ranker of issue 16 would then put projected item
vectors where it now puts title tokens. Prints the largest absolute difference of the label
log-probabilities, whether the rankings agree, and the median latency of each way.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()

    import httpx
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agent.bench.rank import demo_conversations
    from agent.llm.engine import prompt_ids, single_token_ids
    from agent.llm.model_files import ensure_checkpoint
    from agent.llm.server import ServerConfig, VLLMServer
    from agent.llm.vllm_engine import BASE_MODEL_NAME
    from agent.pipeline.ranker import LABELS

    folder = ensure_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    table = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).get_input_embeddings()
    labels = single_token_ids(tokenizer, LABELS)
    conversations = demo_conversations(args.prompts)
    config = ServerConfig(folder, port=args.port, dtype="float32", extra_args=["--enable-prompt-embeds"])

    def ask(client, body: dict) -> tuple[list[float], float]:
        started = time.perf_counter()
        r = client.post(
            "/v1/completions",
            json={
                "model": BASE_MODEL_NAME,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprob_token_ids": labels,
                "logprobs": 1,
                **body,
            },
        )
        r.raise_for_status()
        top = r.json()["choices"][0]["logprobs"]["top_logprobs"][0]
        got = {
            int(k.removeprefix("token_id:")) if k.startswith("token_id:") else tokenizer.convert_tokens_to_ids(k): v
            for k, v in top.items()
        }
        return [got[i] for i in labels], time.perf_counter() - started

    diffs, same, t_ids, t_embeds = [], 0, [], []
    with VLLMServer(config) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        for conversation in conversations:
            ids = prompt_ids(tokenizer, conversation)
            with torch.no_grad():
                embeds = table(torch.tensor(ids)).to(torch.float32)
            buffer = io.BytesIO()
            torch.save(embeds, buffer)
            a, ta = ask(client, {"prompt": ids, "return_tokens_as_token_ids": True})
            b, tb = ask(
                client,
                {"prompt_embeds": base64.b64encode(buffer.getvalue()).decode(), "return_tokens_as_token_ids": True},
            )
            diffs.append(float(np.max(np.abs(np.array(a) - np.array(b)))))
            same += int(
                np.argsort(-np.array(a), kind="stable").tolist() == np.argsort(-np.array(b), kind="stable").tolist()
            )
            t_ids.append(ta)
            t_embeds.append(tb)
    print(f"{len(conversations)} ranking prompts, {len(labels)} labels each")
    print(
        f"largest |log-prob difference|, token ids vs embeddings: {max(diffs):.2e} "
        f"(median {statistics.median(diffs):.2e})"
    )
    print(f"same label ranking: {same}/{len(conversations)}")
    print(
        f"median latency: token ids {statistics.median(t_ids):.3f} s, embeddings {statistics.median(t_embeds):.3f} s"
    )


if __name__ == "__main__":
    main()
