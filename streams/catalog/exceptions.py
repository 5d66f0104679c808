"""Errors of the catalog: bad product sources, missing artifacts, a missing Qdrant collection."""

from __future__ import annotations

from streams.contracts.errors import VitrineError


class CatalogError(VitrineError):
    """The catalog cannot be built or loaded as asked; the message says what to do."""
