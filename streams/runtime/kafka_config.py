"""Kafka connection options from settings, in the shapes aiokafka and Faust each expect."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from streams.runtime.settings import SecurityProtocol, Settings


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(
        cafile=str(settings.connection.kafka_ssl_cafile) if settings.connection.kafka_ssl_cafile else None
    )
    if settings.connection.kafka_ssl_certfile:
        ctx.load_cert_chain(
            str(settings.connection.kafka_ssl_certfile),
            str(settings.connection.kafka_ssl_keyfile) if settings.connection.kafka_ssl_keyfile else None,
        )
    return ctx


def _uses_ssl(settings: Settings) -> bool:
    return settings.connection.kafka_security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)


def _uses_sasl(settings: Settings) -> bool:
    return settings.connection.kafka_security_protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.connection.kafka_bootstrap_servers,
        "security_protocol": settings.connection.kafka_security_protocol.value,
    }
    if _uses_ssl(settings):
        opts["ssl_context"] = _ssl_context(settings)
    if _uses_sasl(settings):
        opts["sasl_mechanism"] = settings.connection.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.connection.kafka_sasl_username
        if settings.connection.kafka_sasl_password is not None:
            opts["sasl_plain_password"] = settings.connection.kafka_sasl_password.get_secret_value()
    return opts


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    if _uses_sasl(settings):
        password = (
            settings.connection.kafka_sasl_password.get_secret_value()
            if settings.connection.kafka_sasl_password
            else None
        )
        return faust.SASLCredentials(
            username=settings.connection.kafka_sasl_username,
            password=password,
            mechanism=settings.connection.kafka_sasl_mechanism,
            ssl_context=_ssl_context(settings) if _uses_ssl(settings) else None,
        )
    if _uses_ssl(settings):
        return faust.SSLCredentials(_ssl_context(settings))
    return None
