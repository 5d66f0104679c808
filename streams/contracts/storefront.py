"""The storefront update: the one message the generator publishes to ``storefront-updates``.

Keyed by session id. ``version`` is the regeneration request's version, which only increases per
session, so a consumer that keeps the highest version it has applied (and ignores anything at or
below it) shows the same page however often an update is delivered::

    if update.version > page_version.get(update.session_id, 0):
        render(update); page_version[update.session_id] = update.version

``schema_version`` changes only with an incompatible change; fields are only ever added.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class ItemSource(StrEnum):
    """Which signal put an item on the page (the strongest one when several agree)."""

    RETRIEVAL = "retrieval"
    COVISITATION = "covisitation"
    CATEGORY = "category"
    POPULARITY = "popularity"
    RECENTLY_VIEWED = "recently_viewed"  # the session's own viewed or carted products (continue shopping)
    PURCHASE_HISTORY = "purchase_history"  # the context's own purchases (buy again)


class Arm(StrEnum):
    """Experiment arm: ``control`` = traditional strategies only; ``teacher`` = the offline catalog teacher's
    themes and keywords (rules, no model) + retrieval + ranker fusion; ``generative`` = the distilled student's
    themes and keywords + retrieval + ranker fusion."""

    CONTROL = "control"
    TEACHER = "teacher"
    GENERATIVE = "generative"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Item(_Frozen):
    product_id: str
    score: float
    source: ItemSource


class Quality(_Frozen):
    ok: bool
    reasons: list[str] = Field(default_factory=list)


class Scope(_Frozen):
    """What a placement's theme promises about every item on it, so a merchandiser (and a test) can hold the page
    to it: ``Deals on smartphones under $256`` is categories of that label and ``max_price`` 256; a brand theme
    names its ``brand``. Empty: the theme promises nothing (control themes)."""

    categories: list[str] = Field(default_factory=list, description="Any of these; empty: any category.")
    brand: str | None = Field(default=None, description="Lower case, as the catalog's brand field.")
    max_price: float | None = Field(default=None, description="Every item costs at most this.")


class Placement(_Frozen):
    kind: str
    theme: str
    keywords: list[str]
    items: list[Item]
    quality: Quality
    fallback: bool = Field(description="True when the placement was filled by the traditional strategy.")
    scope: Scope = Field(default_factory=Scope, description="What the theme promises; every item honours it.")


class Latency(_Frozen):
    """Milliseconds. ``request_to_publish`` runs from the request leaving the session worker."""

    generation: float = 0.0
    retrieval: float = 0.0
    fusion: float = 0.0
    total: float = 0.0
    request_to_publish: float = 0.0


class StorefrontUpdate(_Frozen):
    schema_version: int = SCHEMA_VERSION
    session_id: str
    user_id: str | None
    version: int = Field(ge=1)
    event_ts: int = Field(description="Event time (ms) of the event that triggered the regeneration.")
    requested_at_ms: int
    published_at_ms: int
    trigger: str
    arm: Arm
    experiment_id: str | None = Field(default=None, description="The experiment whose salt assigned ``arm``.")
    placements: list[Placement]
    degraded: bool = Field(description="Something failed and a fallback filled in; see degraded_reasons.")
    degraded_reasons: list[str] = Field(default_factory=list)
    model_version: str | None = None
    latency_ms: Latency = Field(default_factory=Latency)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StorefrontUpdate:
        return cls.model_validate_json(raw)

    def product_ids(self) -> list[str]:
        return [item.product_id for placement in self.placements for item in placement.items]
