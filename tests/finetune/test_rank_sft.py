"""`finetune.rank_sft.train` end to end on a small MovieLens-layout folder: the retriever is fitted
and saved, examples are built from each user's training positions, two steps train the LoRA
adapter (its weights move, on the top layer only), the manifest records what was run, and a
second call resumes: it reuses the saved retriever and the last checkpoint."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

GENRES = ["Comedy", "Drama", "Horror", "Sci-Fi", "Romance", "Action"]


def write_movielens(folder, users: int = 36, movies: int = 48, per_user: int = 14, seed: int = 0) -> None:
    """A ml-latest layout (movies.csv, ratings.csv) where each user keeps to one genre block, so
    the retriever has structure to find; every user and movie survives the 5-core filter."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["movieId,title,genres"]
    for m in range(movies):
        lines.append(f'{m + 1},"Film {m + 1} ({1970 + m % 40})",{GENRES[m % len(GENRES)]}')
    (folder / "movies.csv").write_text("\n".join(lines) + "\n")
    rows = ["userId,movieId,rating,timestamp"]
    for u in range(users):
        home = u % len(GENRES)
        own = [m for m in range(movies) if m % len(GENRES) == home]
        rest = [m for m in range(movies) if m % len(GENRES) != home]
        picks = list(rng.permutation(own)) + list(rng.choice(rest, per_user - len(own), replace=False))
        for t, m in enumerate(picks):
            rows.append(f"{u + 1},{m + 1},{rng.integers(3, 6)}.0,{1_000_000 + 1000 * u + t}")
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_train_fits_the_retriever_trains_two_steps_and_resumes(tiny_lora, tmp_path, caplog):
    from safetensors.torch import load_file

    from finetune.rank_sft import RankSFTConfig, load_examples, train

    data = tmp_path / "ml-tiny"
    write_movielens(data)
    out = tmp_path / "run"
    cfg = RankSFTConfig(
        data=data,
        output_dir=out,
        examples=16,
        unseen_positions=4,
        **tiny_lora,
    )
    caplog.set_level(logging.INFO, logger="finetune.rank_sft")
    adapter = train(cfg)

    assert (out / "retriever" / "model.json").exists()
    held_out = load_examples(out / "held_out.jsonl")
    assert held_out and all(len(e.candidates) == 20 and e.candidates[e.target] for e in held_out)

    # LoRA's B matrices start at zero: after two steps they are not, and only the top layer has any.
    weights = load_file(adapter / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(".layers.1." in k for k in weights)
    assert max(float(v.abs().max()) for v in lora_b.values()) > 0, "two steps left every lora_B at zero"

    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["kind"] == "ranker" and manifest["lora_r"] == 4 and manifest["examples"] == 16
    assert manifest["config"]["max_steps"] == 2 and manifest["data_hash"]
    assert np.isfinite(manifest["train_loss"])
    rows = manifest["held_out"]
    assert rows["positions"] == len(held_out)
    assert {"retrieval", "zero_shot", "tuned", "tuned_fused"} <= set(rows)
    assert all(0.0 <= rows[name]["N@10"] <= 1.0 for name in ("retrieval", "tuned", "tuned_fused"))

    # A second call (as after an interruption) reuses the retriever and resumes at step 2.
    caplog.clear()
    cfg.max_steps = 3
    train(cfg)
    said = caplog.text
    assert "reusing the retriever saved in" in said
    assert "resuming from" in said and "checkpoint-2" in said
