"""Typed settings in sections, read from the environment (prefix ``VITRINE_``) so one image serves every deployment.

Each section is read on its own (connection, topics, worker, generator, catalog, teacher, operations) and a
component takes only the sections it needs; the environment variable of a field is ``VITRINE_`` + its name in
capitals, whatever its section, so the names stay flat and stable. ``Settings(app_id=...)`` and
``settings.replace(catalog_dir=...)`` take flat field names too, routed to their sections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.contracts.experiment import DEFAULT_EXPERIMENT_ID, MAX_SALT_BYTES


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class StoreKind(StrEnum):
    MEMORY = "memory"
    ROCKSDB = "rocksdb"


class _Section(BaseSettings):
    # "none" in the environment unsets an optional setting whose default is not None (VITRINE_MODEL_DIR=none).
    model_config = SettingsConfigDict(env_prefix="VITRINE_", extra="ignore", frozen=True, env_parse_none_str="none")


class ConnectionSettings(_Section):
    """How to reach Kafka. Secrets are ``SecretStr`` so they never reach a log line."""

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "VITRINE_KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"
        ),
        description="Comma-separated host:port list.",
    )
    kafka_security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # Consumer-group membership: how fast a killed process's partitions come back.
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


class TopicSettings(_Section):
    """Topic names, the consumer-group and changelog prefix, and how new topics are created."""

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
    storefront_topic: str = "storefront-updates"
    catalog_updates_topic: str = "catalog-updates"
    merch_rules_topic: str = Field(
        default="merch-rules", description="Compacted: the merchandising rules (boosts, excludes, campaigns) by id."
    )
    merch_dlq_topic: str = Field(
        default="merch-rules.dlq", description="Rejected merchandising rules, with the reason, for who wrote them."
    )
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)


class WorkerSettings(_Section):
    """The session worker: state store, event contract, trigger policy, ranker signals, flushing."""

    store: StoreKind = StoreKind.MEMORY
    data_dir: Path = Path("var/worker")
    session_ttl_s: float = Field(default=1800.0, gt=0, description="Idle sessions older than this (event time) expire.")
    expiry_interval_s: float = Field(default=30.0, gt=0)
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
    # Trigger policy (defaults tuned on REES46: see README).
    trigger_min_events: int = Field(default=3, ge=1)
    trigger_drift_high: float = Field(default=0.35, gt=0, le=2)
    trigger_drift_low: float = Field(default=0.2, ge=0, le=2)
    trigger_cooldown_s: float = Field(default=60.0, ge=0)
    affinity_half_life_s: float = Field(default=600.0, gt=0)
    # Ranker signals (partition-local popularity and co-visitation tables).
    ranker_half_life_s: float = Field(default=3600.0, gt=0, description="Popularity half-life, event time.")
    ranker_candidates: int = Field(default=24, ge=1, description="Products per ranker list in a request.")
    flush_max_events: int = Field(default=2000, ge=1, description="Events between changelog flushes (and acks).")
    flush_interval_s: float = Field(default=0.2, gt=0, description="Longest wait before a changelog flush.")
    producer_linger_s: float = Field(
        default=0.01, ge=0, description="Producer batching delay for changelog and requests."
    )
    fast_delivery: bool = Field(
        default=True,
        description="Hand fetched messages to Faust's conductor without four tasks each unless delivery blocks "
        "(streams/runtime/faust_fastpath.py); false: Faust's own path.",
    )
    direct_path: bool = Field(
        default=True,
        description="The session worker's clickstream messages go from the drain loop straight to the worker, not "
        "through the conductor and the agent's stream (needs fast_delivery: it lives in its drain loop).",
    )
    # RocksDB memory (store=rocksdb). Faust opens one database per table and partition, each with its own block
    # cache and write buffers, and its defaults (2 GiB cache, 3 x 64 MiB buffers) exceed a pod's limit many times.
    rocksdb_block_cache_bytes: int = Field(
        default=16 * 1024**2, ge=1024**2, description="LRU block cache of one table's database for one partition."
    )
    rocksdb_write_buffer_bytes: int = Field(
        default=8 * 1024**2, ge=1024**2, description="One memtable of one table's database for one partition."
    )
    rocksdb_write_buffers: int = Field(
        default=2, ge=2, description="Memtables per database (one filling while another is flushed)."
    )
    rocksdb_max_open_files: int = Field(
        default=256, ge=16, description="Open SST files per database (each holds its index and filter in memory)."
    )

    def rocksdb_options(self) -> dict[str, int]:
        """The keyword arguments of Faust's ``RocksDBOptions``, passed to every table as ``options=``."""
        return {
            "block_cache_size": self.rocksdb_block_cache_bytes,
            "write_buffer_size": self.rocksdb_write_buffer_bytes,
            "max_write_buffer_number": self.rocksdb_write_buffers,
            "max_open_files": self.rocksdb_max_open_files,
        }

    def rocksdb_bytes_per_database(self) -> int:
        """What one database may hold in block cache and memtables (indexes and filters of open files aside)."""
        return self.rocksdb_block_cache_bytes + self.rocksdb_write_buffer_bytes * self.rocksdb_write_buffers


# The page's placement kinds (``streams.generator.layout``), spelt here because settings sit below the generator.
ShelfName = Literal["hero", "because_you_viewed", "explore", "deals", "continue_shopping", "buy_again"]
# Explore is about variety: at least two categories (or brands, where its theme names the category).
DEFAULT_DIVERSITY_FLOOR: dict[ShelfName, int] = {"explore": 2}


class GeneratorSettings(_Section):
    """The storefront generator: the student, micro-batches, page shape, experiment arms."""

    model_dir: Path | None = Field(
        default=Path("models/student"),
        description="Student ONNX model; unset or unloadable: the catalog teacher plans.",
    )
    onnx_providers: str = Field(
        default="auto", description="auto (CUDA when available, else CPU) or a comma list of ONNX Runtime providers."
    )
    generator_batch_max: int = Field(default=32, ge=1, description="Most requests per generator micro-batch.")
    generator_batch_wait_s: float = Field(default=0.05, gt=0, description="Longest wait to fill a micro-batch.")
    generator_max_attempts: int = Field(
        default=3, ge=1, description="Tries of a failing request before it is dead-lettered with the reason."
    )
    generator_retry_backoff_s: float = Field(default=0.5, ge=0, description="First retry delay; doubles each try.")
    generator_backlog_read_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest read of an assigned partition's waiting requests; past it, serving goes on without.",
    )
    items_per_placement: int = Field(default=6, ge=1)
    ranker_model: Path | None = Field(
        default=None,
        description="Learned fusion: a LightGBM ranker (`vitrine train-ranker`, e.g. models/ranker/rees46); unset "
        "or unloadable: weighted reciprocal-rank fusion.",
    )
    diversity_floor: dict[ShelfName, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: dict(DEFAULT_DIVERSITY_FLOOR),
        description="Per placement kind, the fewest distinct categories among its items (distinct brands where "
        'its theme names a category); JSON, e.g. {"explore": 2}; a kind not named: 1 (no floor).',
    )
    experiment_control_share: float = Field(
        default=0.1, ge=0, le=1, description="Share of sessions (by hash) shown the traditional control arm."
    )
    experiment_id: str = Field(
        default=DEFAULT_EXPERIMENT_ID,
        max_length=MAX_SALT_BYTES,
        description="Salts the session hash that assigns arms: a new id draws a new split (stamped on every update).",
    )


class CatalogSettings(_Section):
    """Catalog artifacts, the embedder and the product vector store."""

    catalog_dir: Path | None = Field(default=None, description="Catalog artifacts with product vectors, if built.")
    embedder_dir: Path = Field(
        default=Path("var/models/minilm"), description="Exported all-MiniLM-L6-v2 (model.onnx + tokenizer.json)."
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server; without it, local mode on disk at <catalog_dir>/qdrant."
    )
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = "vitrine-products"


class TeacherSettings(_Section):
    """The network teacher: offline distillation labels from an OpenAI-compatible chat-completions endpoint."""

    teacher_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1."
    )
    teacher_model: str = "gpt-4o-mini"
    teacher_api_key: SecretStr | None = None
    teacher_response_format: str = Field(
        default="json_schema",
        description="json_schema (OpenAI structured outputs), json_object_schema (llama.cpp, vLLM) or json_object.",
    )


class OperationsSettings(_Section):
    """Web endpoints (/livez, /readyz, /metrics) and logs."""

    web_host: str = "0.0.0.0"
    web_port: int = Field(default=6066, ge=1, le=65535)
    log_level: str = "INFO"
    log_json: bool = True
    agent_crash_limit: int = Field(
        default=3, ge=1, description="Agent crashes (or failed generator batches) in a row after which /readyz fails."
    )


_SECTIONS: dict[str, type[_Section]] = {
    "connection": ConnectionSettings,
    "topics": TopicSettings,
    "worker": WorkerSettings,
    "generator": GeneratorSettings,
    "catalog": CatalogSettings,
    "teacher": TeacherSettings,
    "operations": OperationsSettings,
}
SECTION_OF: dict[str, str] = {field: name for name, cls in _SECTIONS.items() for field in cls.model_fields}
# Every field of every section by its flat name: what documentation and manifest checks enumerate.
FIELDS: dict[str, FieldInfo] = {field: info for cls in _SECTIONS.values() for field, info in cls.model_fields.items()}
SECRET_FIELDS = frozenset(
    field
    for cls in _SECTIONS.values()
    for field, info in cls.model_fields.items()
    if "SecretStr" in str(info.annotation)
)


class Settings(BaseModel):
    """Every knob, by section; each section reads its own ``VITRINE_*`` variables."""

    model_config = ConfigDict(frozen=True)

    connection: ConnectionSettings = Field(default_factory=ConnectionSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    operations: OperationsSettings = Field(default_factory=OperationsSettings)

    @model_validator(mode="before")
    @classmethod
    def _route_flat_fields(cls, data: Any) -> Any:
        """``Settings(app_id="x")``: a flat field goes to its section, read with the environment for the rest."""
        if not isinstance(data, dict):
            return data
        routed: dict[str, Any] = {}
        flat: dict[str, dict[str, Any]] = {}
        for key, value in data.items():
            if key in _SECTIONS:
                routed[key] = value
            elif key in SECTION_OF:
                flat.setdefault(SECTION_OF[key], {})[key] = value
            else:
                raise ValueError(f"unknown setting {key!r}")
        for section, values in flat.items():
            current = routed.get(section)
            base = current.model_dump() if isinstance(current, BaseModel) else dict(current or {})
            routed[section] = _SECTIONS[section](**{**base, **values})
        return routed

    def replace(self, **changes: Any) -> Settings:
        """A copy with some flat fields changed, validated like the environment's values."""
        sections: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in SECTION_OF:
                raise ValueError(f"unknown setting {key!r}")
            sections.setdefault(SECTION_OF[key], {})[key] = value
        updated = {
            name: _SECTIONS[name](**{**getattr(self, name).model_dump(), **values}) for name, values in sections.items()
        }
        return self.model_copy(update=updated)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Settings:
        """Refuses flat field names, which pydantic would set unvalidated beside the sections: use ``replace``."""
        stray = sorted(set(update or {}) - set(_SECTIONS))
        if stray:
            raise ValueError(f"not sections: {', '.join(stray)} (use Settings.replace for fields)")
        return super().model_copy(update=update, deep=deep)

    def to_env(self) -> dict[str, str]:
        """The environment under which a worker process reads back exactly these settings."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.connection.kafka_bootstrap_servers}
        for section_name, section_cls in _SECTIONS.items():
            section = getattr(self, section_name)
            for name, value in section.model_dump().items():
                if name == "kafka_bootstrap_servers":
                    continue
                if isinstance(value, SecretStr):
                    value = value.get_secret_value()
                if value is None:
                    if section_cls.model_fields[name].default is not None:
                        env[f"VITRINE_{name.upper()}"] = "none"
                else:
                    env[f"VITRINE_{name.upper()}"] = (
                        json.dumps(value)
                        if isinstance(value, dict)
                        else str(value.value if isinstance(value, Enum) else value)
                    )
        return env


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return "KAFKA_BOOTSTRAP_SERVERS" if field == "kafka_bootstrap_servers" else f"VITRINE_{field.upper()}"


def describe_error(exc: ValidationError) -> str:
    """One line naming each bad variable: ``VITRINE_TOPIC_PARTITIONS='zero': Input should be a valid integer``."""
    parts = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        field = next((part for part in reversed(loc) if part in SECTION_OF), loc[-1] if loc else "?")
        secret = field in SECRET_FIELDS or isinstance(err["input"], dict)
        shown = env_name(field) if secret else f"{env_name(field)}={err['input']!r}"
        parts.append(f"{shown}: {err['msg']}")
    return "; ".join(parts)
