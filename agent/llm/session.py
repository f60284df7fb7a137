"""Open the configured engine for the length of a command: connect to a running vLLM server,
start one (and stop it afterwards), or load the model in-process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from agent.config import Settings
from agent.llm import registry
from agent.llm.engine import Engine
from agent.llm.hardware import resolve_dtype
from agent.llm.model_files import model_path

logger = logging.getLogger(__name__)


@contextmanager
def open_engine(
    settings: Settings,
    engine: str | None = None,
    supervise: bool = False,
    with_adapters: bool = False,
    adapters: dict[str, Path] | None = None,
) -> Iterator[Engine]:
    """``supervise``: restart the vLLM server Muse started if it dies (long-running serving);
    ``with_adapters``: serve every registered adapter by name (evaluation and benchmarks);
    ``adapters``: serve exactly these LoRA adapters (name -> folder) instead of the registry's
    (an evaluation of an adapter that is not registered)."""
    kind = engine or settings.llm_engine
    # Ranker adapters ride on the engine only as LoRA (MUSE_RANK_ENGINE=lora, or commands that
    # score adapters by name: eval, bench rank); merged rankers run apart, so the engine that
    # writes the texts serves the base model alone and pays no LoRA cost.
    if adapters is None:
        adapters = registry.adapters(settings) if settings.rank_engine == "lora" or with_adapters else {}
    # Serving alone (no LoRA adapters on the engine), the checkpoint holds the promoted text
    # adapter merged in; LoRA adapters are trained on, and ride on, the base model itself.
    checkpoint = model_path(settings) if adapters else registry.text_checkpoint(settings)
    with ExitStack() as stack:
        if kind == "transformers":
            from agent.llm.transformers_engine import TransformersEngine

            llm: Engine = TransformersEngine(checkpoint, adapters, dtype=resolve_dtype(settings.llm_dtype))
        else:
            from agent.llm.server import ServerConfig, Supervisor, VLLMServer
            from agent.llm.vllm_engine import VLLMEngine

            urls, server = settings.llm_urls, None
            if not urls:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                config = ServerConfig(
                    checkpoint,
                    adapters,
                    port=settings.llm_port,
                    dtype=resolve_dtype(settings.llm_dtype),
                    threads=settings.llm_threads,
                    log_file=settings.data_dir / "vllm.log",
                )
                logger.info(
                    f"starting vLLM on {config.url} (log: {config.log_file}), adapters: "
                    f"{', '.join(adapters) or 'none'}"
                )
                server = stack.enter_context(VLLMServer(config))
                urls = [server.url]
            if len(urls) > 1:
                from agent.llm.replicas import VLLMReplicas

                llm = VLLMReplicas(urls, adapters, interval=settings.llm_health_interval_s)
            else:
                llm = VLLMEngine(urls[0], adapters)
            if server is not None and supervise:
                stack.enter_context(Supervisor(server, lambda: llm.adapters))
        stack.callback(llm.close)
        yield llm
