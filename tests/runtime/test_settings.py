"""Settings from the environment, secret handling, and the Kafka options built from them."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streams.runtime.kafka_config import aiokafka_options, faust_credentials
from streams.runtime.settings import SECTION_OF, SecurityProtocol, Settings, StoreKind, describe_error

PASSWORD = "s3cr3t-hunter2-\u00e9"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VITRINE_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert s.connection.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.connection.kafka_security_protocol is SecurityProtocol.PLAINTEXT
    assert s.connection.kafka_sasl_password is None


def test_kafka_bootstrap_servers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-0:9092,broker-1:9092")
    assert Settings().connection.kafka_bootstrap_servers == "broker-0:9092,broker-1:9092"


def test_prefixed_bootstrap_servers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_KAFKA_BOOTSTRAP_SERVERS", "kafka.internal:9093")
    assert Settings().connection.kafka_bootstrap_servers == "kafka.internal:9093"


def test_keyword_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:1")
    assert Settings(kafka_bootstrap_servers="from-kwarg:2").connection.kafka_bootstrap_servers == "from-kwarg:2"


def test_vitrine_prefix_for_other_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("VITRINE_STORE", "rocksdb")
    monkeypatch.setenv("VITRINE_TRIGGER_COOLDOWN_S", "2.5")
    monkeypatch.setenv("VITRINE_LOG_JSON", "false")
    monkeypatch.setenv("VITRINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TOPIC_PARTITIONS", "99")  # unprefixed names are not read
    s = Settings()
    assert s.topics.topic_partitions == 12
    assert s.worker.store is StoreKind.ROCKSDB
    assert s.worker.trigger_cooldown_s == 2.5
    assert s.operations.log_json is False
    assert s.connection.kafka_security_protocol is SecurityProtocol.SASL_SSL


def test_invalid_env_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_TOPIC_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="topic_partitions") as info:
        Settings()
    assert describe_error(info.value) == "VITRINE_TOPIC_PARTITIONS='0': Input should be greater than or equal to 1"


def test_password_never_appears_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_KAFKA_SASL_PASSWORD", PASSWORD)
    s = Settings()
    assert isinstance(s.connection.kafka_sasl_password, SecretStr)
    assert s.connection.kafka_sasl_password.get_secret_value() == PASSWORD
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), f"{s}", f"{s!r}"):
        assert PASSWORD not in text
        assert "s3cr3t" not in text


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.topics.topic_partitions = 9


# --- Kafka options ----------------------------------------------------------------------------------


def sasl(protocol: SecurityProtocol, password: str | None = PASSWORD) -> Settings:
    return Settings(
        kafka_bootstrap_servers="b:9092",
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="vitrine",
        kafka_sasl_password=password,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("protocol", [SecurityProtocol.PLAINTEXT, SecurityProtocol.SSL])
def test_no_sasl_fields_without_sasl(protocol: SecurityProtocol) -> None:
    opts = aiokafka_options(sasl(protocol))
    assert opts["bootstrap_servers"] == "b:9092"
    assert opts["security_protocol"] == protocol.value
    assert not [k for k in opts if k.startswith("sasl")]
    assert ("ssl_context" in opts) is (protocol is SecurityProtocol.SSL)


@pytest.mark.parametrize("protocol", [SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL])
def test_sasl_fields_with_sasl(protocol: SecurityProtocol) -> None:
    opts = aiokafka_options(sasl(protocol))
    assert opts["security_protocol"] == protocol.value
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "vitrine"
    assert opts["sasl_plain_password"] == PASSWORD
    assert isinstance(opts["sasl_plain_password"], str)
    if protocol is SecurityProtocol.SASL_SSL:
        assert isinstance(opts["ssl_context"], ssl.SSLContext)
    else:
        assert "ssl_context" not in opts


def test_sasl_without_password_sends_none() -> None:
    opts = aiokafka_options(sasl(SecurityProtocol.SASL_PLAINTEXT, password=None))
    assert "sasl_plain_password" not in opts
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"


def test_faust_credentials() -> None:
    assert faust_credentials(Settings()) is None
    creds = faust_credentials(sasl(SecurityProtocol.SASL_PLAINTEXT))
    assert creds is not None
    assert creds.username == "vitrine"  # type: ignore[attr-defined]
    assert creds.password == PASSWORD  # type: ignore[attr-defined]


def test_to_env_round_trips_every_field_through_a_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the demo, benchmark and tests hand to a worker process must read back as the same settings."""
    original = Settings(
        kafka_bootstrap_servers="broker-1:9093,broker-2:9093",
        kafka_security_protocol=SecurityProtocol.SASL_SSL,
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("s3cret"),
        store=StoreKind.ROCKSDB,
        data_dir=Path("/var/lib/vitrine"),
        topic_partitions=8,
        trigger_drift_high=0.42,
        log_json=False,
    )
    for name in list(os.environ):
        if name.startswith("VITRINE_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    for name, value in original.to_env().items():
        monkeypatch.setenv(name, value)
    restored = Settings()
    assert restored == original
    assert restored.connection.kafka_sasl_password is not None
    assert restored.connection.kafka_sasl_password.get_secret_value() == "s3cret"


def test_sections_keep_the_flat_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each field sits in one section and is still set by VITRINE_<FIELD>, so deployments need no change."""
    assert {"connection", "topics", "worker", "generator", "catalog", "teacher", "operations"} == set(
        SECTION_OF.values()
    )
    monkeypatch.setenv("VITRINE_GENERATOR_BATCH_MAX", "7")
    monkeypatch.setenv("VITRINE_CATALOG_DIR", "/srv/catalog")
    s = Settings(web_port=7000)
    assert s.generator.generator_batch_max == 7
    assert s.catalog.catalog_dir == Path("/srv/catalog")
    assert s.operations.web_port == 7000
    changed = s.replace(web_port=7001, catalog_dir=None)
    assert changed.operations.web_port == 7001 and changed.catalog.catalog_dir is None
    assert changed.generator == s.generator  # untouched sections are shared as they are
    with pytest.raises(ValueError, match="unknown setting 'web_prot'"):
        s.replace(web_prot=1)
    with pytest.raises(ValidationError, match="unknown setting"):
        Settings(web_prot=1)
    with pytest.raises(ValueError, match=r"use Settings\.replace"):
        s.model_copy(update={"web_port": 1})  # pydantic would set it unvalidated beside the sections


def test_a_bad_value_is_one_line_naming_the_variable_and_never_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITRINE_WEB_PORT", "99999")
    monkeypatch.setenv("VITRINE_KAFKA_SASL_PASSWORD", PASSWORD)
    with pytest.raises(ValidationError) as info:
        Settings()
    line = describe_error(info.value)
    assert line == "VITRINE_WEB_PORT='99999': Input should be less than or equal to 65535"
    assert "\n" not in line and PASSWORD not in line
