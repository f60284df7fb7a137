"""SASRec (Kang & McAuley 2018) trained with full softmax over all items.

A small causal transformer reads a user's item sequence; its last hidden state is the user
vector and the (tied) item embedding table holds the item vectors, so scoring is one inner
product, which is what Chroma serves. Training uses cross-entropy over ALL items at every
position rather than the paper's single sampled negative: that is most of the gap between the
paper's SASRec (N@10 0.052 on ml-latest-small) and this one (see ../shared/design.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SASRecConfig:
    hidden: int = field(default=128, metadata={"help": "embedding and model width"})
    blocks: int = field(default=2, metadata={"help": "transformer blocks"})
    heads: int = field(default=1, metadata={"help": "attention heads"})
    dropout: float = field(default=0.3, metadata={"help": "dropout on embeddings and blocks"})
    max_len: int = field(default=200, metadata={"help": "most recent items the model reads"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=32, metadata={"help": "users per step"})
    max_epochs: int = field(default=40, metadata={"help": "upper bound on epochs"})
    patience: int = field(default=10, metadata={"help": "epochs without validation gain before stop"})


def _left_pad(seqs: Sequence[Sequence[int]], length: int) -> np.ndarray:
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = list(seq)[-length:]
        if tail:
            out[row, length - len(tail) :] = tail
    return out


def build_model(n_items: int, config: SASRecConfig):
    import torch
    from torch import nn

    class SASRec(nn.Module):
        """Item ids are 1..n_items; 0 is padding (sequences are left-padded)."""

        def __init__(self) -> None:
            super().__init__()
            self.items = nn.Embedding(n_items + 1, config.hidden, padding_idx=0)
            self.positions = nn.Embedding(config.max_len, config.hidden)
            self.dropout = nn.Dropout(config.dropout)
            layer = nn.TransformerEncoderLayer(
                config.hidden,
                config.heads,
                dim_feedforward=config.hidden,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, config.blocks, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(config.hidden)
            # Small initial embeddings: with PyTorch's N(0, 1) default the initial logits over
            # thousands of items are so large that training starts far above ln(n_items).
            nn.init.normal_(self.items.weight, std=0.02)
            nn.init.normal_(self.positions.weight, std=0.02)
            with torch.no_grad():
                self.items.weight[0].zero_()

        def forward(self, seqs: torch.Tensor) -> torch.Tensor:
            length = seqs.shape[1]
            pos = torch.arange(config.max_len - length, config.max_len, device=seqs.device)
            x = self.items(seqs) * math.sqrt(config.hidden) + self.positions(pos)
            x = self.dropout(x)
            # Causal attention that ignores padding keys; a padding query may see itself so that
            # no row is fully masked (which would give NaNs).
            causal = torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()
            real = (seqs != 0)[:, None, :]
            allowed = causal[None] & (real | torch.eye(length, dtype=torch.bool)[None])
            mask = (~allowed).repeat_interleave(config.heads, dim=0)
            return self.norm(self.encoder(x, mask=mask))

        def item_vectors(self) -> torch.Tensor:
            return self.items.weight[1:]

    return SASRec()


class SASRecModel:
    """Trains, then turns histories of item indices (0-based) into user vectors."""

    def __init__(self, n_items: int, config: SASRecConfig | None = None, seed: int = 0):
        import torch

        self.config = config or SASRecConfig()
        self.n_items = n_items
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.net = build_model(n_items, self.config)
        self.best_epoch = 0
        self.history: list[dict[str, float]] = []

    def fit(
        self,
        sequences: Sequence[Sequence[int]],
        validate: Callable[[SASRecModel], float] | None,
        progress: Callable[[str], None] | None = None,
    ) -> SASRecModel:
        """Train on ``sequences`` and keep the epoch with the best ``validate`` score; with no
        ``validate``, train exactly ``max_epochs`` epochs (a count chosen earlier)."""
        import torch
        import torch.nn.functional as F

        cfg = self.config
        shifted = [[i + 1 for i in seq] for seq in sequences if len(seq) >= 2]
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, since_best = -1.0, None, 0
        for epoch in range(1, cfg.max_epochs + 1):
            self.net.train()
            order = self.rng.permutation(len(shifted))
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                batch = [shifted[j] for j in order[start : start + cfg.batch_size]]
                inputs = torch.from_numpy(_left_pad([s[:-1] for s in batch], cfg.max_len))
                targets = torch.from_numpy(_left_pad([s[1:] for s in batch], cfg.max_len))
                keep = targets > 0
                hidden = self.net(inputs)[keep]
                logits = hidden @ self.net.item_vectors().T
                loss = F.cross_entropy(logits, targets[keep] - 1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
            if validate is None:
                self.best_epoch = epoch
                if progress:
                    progress(f"epoch {epoch}: loss {total:.1f}")
                continue
            score = validate(self)
            self.history.append({"epoch": epoch, "loss": total, "validation": score})
            if progress:
                progress(f"epoch {epoch}: loss {total:.1f} validation N@10 {score:.4f}")
            if score > best:
                best, since_best, self.best_epoch = score, 0, epoch
                best_state = copy.deepcopy(self.net.state_dict())
            else:
                since_best += 1
                if since_best >= cfg.patience:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()
        return self

    def user_vectors(self, histories: Sequence[Sequence[int]], batch: int = 256) -> np.ndarray:
        import torch

        self.net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(histories), batch):
                chunk = [[i + 1 for i in h] for h in histories[start : start + batch]]
                padded = torch.from_numpy(_left_pad(chunk, self.config.max_len))
                out.append(self.net(padded)[:, -1].numpy())
        return np.concatenate(out).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net.item_vectors().numpy().astype(np.float32).copy()
