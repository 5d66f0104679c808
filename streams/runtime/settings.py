"""Typed settings, read from the environment (prefix ``VITRINE_``) so one image serves every deployment."""

from __future__ import annotations

from enum import Enum, StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class StoreKind(StrEnum):
    MEMORY = "memory"
    ROCKSDB = "rocksdb"


class Settings(BaseSettings):
    """Every knob of the worker. Secrets are ``SecretStr`` so they never reach a log line."""

    # "none" in the environment unsets an optional setting whose default is not None (VITRINE_MODEL_DIR=none).
    model_config = SettingsConfigDict(env_prefix="VITRINE_", extra="ignore", frozen=True, env_parse_none_str="none")

    # --- Kafka connection -------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "VITRINE_KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port list.",
    )
    kafka_security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # --- topics ------------------------------------------------------------------------
    app_id: str = Field(default="vitrine", description="Faust app id: consumer group and changelog prefix.")
    clickstream_topic: str = "clickstream"
    dlq_topic: str = "clickstream.dlq"
    catalog_dlq_topic: str = Field(
        default="catalog-updates.dlq", description="Rejected catalog updates (not mixed with clickstream rejects)."
    )
    regen_dlq_topic: str = Field(
        default="regen-requests.dlq", description="Regeneration requests the generator could not read or serve."
    )
    dlq_max_value_bytes: int = Field(
        default=512 * 1024,
        gt=0,
        description="Larger rejected values are dead-lettered as a reference (origin, size, sha256) and headers.",
    )
    regen_topic: str = "regen-requests"
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    # --- state -------------------------------------------------------------------------
    store: StoreKind = StoreKind.MEMORY
    data_dir: Path = Path("var/worker")
    session_ttl_s: float = Field(default=1800.0, gt=0, description="Idle sessions older than this (event time) expire.")
    expiry_interval_s: float = Field(default=30.0, gt=0)
    catalog_dir: Path | None = Field(default=None, description="Catalog artifacts with product vectors, if built.")

    # --- catalog: embedder and product vector store -------------------------------------
    embedder_dir: Path = Field(
        default=Path("var/models/minilm"), description="Exported all-MiniLM-L6-v2 (model.onnx + tokenizer.json)."
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server; without it, local mode on disk at <catalog_dir>/qdrant."
    )
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = "vitrine-products"

    # --- event contract ----------------------------------------------------------------
    max_event_bytes: int = Field(default=8192, gt=0)
    event_ts_max_ahead_s: float = Field(
        default=3600.0,
        gt=0,
        description="How far an event's ts may lead its Kafka message timestamp (or the wall clock) before it is "
        "rejected as implausible (e.g. microseconds instead of milliseconds).",
    )
    event_ts_max_age_s: float | None = Field(
        default=None,
        gt=0,
        description="How far ts may trail the message timestamp; unset: no limit (replays of historical logs).",
    )

    # --- trigger policy (defaults tuned on REES46: see README) ---------------------------
    trigger_min_events: int = Field(default=3, ge=1)
    trigger_drift_high: float = Field(default=0.35, gt=0, le=2)
    trigger_drift_low: float = Field(default=0.2, ge=0, le=2)
    trigger_cooldown_s: float = Field(default=60.0, ge=0)
    affinity_half_life_s: float = Field(default=600.0, gt=0)

    # --- ranker signals (partition-local popularity and co-visitation tables) ---------------
    ranker_half_life_s: float = Field(default=3600.0, gt=0, description="Popularity half-life, event time.")
    ranker_candidates: int = Field(default=24, ge=1, description="Products per ranker list in a request.")

    # --- processing --------------------------------------------------------------------
    flush_max_events: int = Field(default=2000, ge=1, description="Events between changelog flushes (and acks).")
    flush_interval_s: float = Field(default=0.2, gt=0, description="Longest wait before a changelog flush.")
    producer_linger_s: float = Field(
        default=0.01, ge=0, description="Producer batching delay for changelog and requests."
    )
    group_instance_id: str | None = Field(
        default=None,
        description="Static group membership (KIP-345): a restarted pod with the same id takes its partitions "
        "back without a rebalance. The StatefulSet sets it to the pod name; unique per process, and the "
        "process must come back on the same web host and port (Faust's assignment carries that address).",
    )
    consumer_session_timeout_s: float = Field(
        default=10.0, gt=0, description="A consumer silent this long is dropped from the group (SIGKILL recovery)."
    )
    consumer_heartbeat_interval_s: float = Field(default=2.0, gt=0)
    agent_crash_limit: int = Field(
        default=3, ge=1, description="Agent crashes (or failed generator batches) in a row after which /readyz fails."
    )
    generator_max_attempts: int = Field(
        default=3, ge=1, description="Tries of a failing request before it is dead-lettered with the reason."
    )
    generator_retry_backoff_s: float = Field(default=0.5, ge=0, description="First retry delay; doubles each try.")

    # --- generator (storefront regeneration) -------------------------------------------------
    model_dir: Path | None = Field(
        default=Path("models/student"),
        description="Student ONNX model; unset or unloadable: the catalog teacher plans.",
    )
    onnx_providers: str = Field(
        default="auto", description="auto (CUDA when available, else CPU) or a comma list of ONNX Runtime providers."
    )
    storefront_topic: str = "storefront-updates"
    catalog_updates_topic: str = "catalog-updates"
    generator_batch_max: int = Field(default=32, ge=1, description="Most requests per generator micro-batch.")
    generator_batch_wait_s: float = Field(default=0.05, gt=0, description="Longest wait to fill a micro-batch.")
    items_per_placement: int = Field(default=6, ge=1)
    experiment_control_share: float = Field(
        default=0.1, ge=0, le=1, description="Share of sessions (by hash) shown the traditional control arm."
    )

    # --- network teacher (offline distillation labels; OpenAI-compatible chat completions) ----
    teacher_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1."
    )
    teacher_model: str = "gpt-4o-mini"
    teacher_api_key: SecretStr | None = None

    # --- operations --------------------------------------------------------------------
    web_host: str = "0.0.0.0"
    web_port: int = Field(default=6066, ge=1, le=65535)
    log_level: str = "INFO"
    log_json: bool = True

    def to_env(self) -> dict[str, str]:
        """The environment under which a worker process reads back exactly these settings."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers}
        for name, value in self.model_dump(exclude={"kafka_bootstrap_servers"}).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is None:
                if type(self).model_fields[name].default is not None:
                    env[f"VITRINE_{name.upper()}"] = "none"
            else:
                env[f"VITRINE_{name.upper()}"] = str(value.value if isinstance(value, Enum) else value)
        return env
