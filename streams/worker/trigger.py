"""When a session's storefront should be regenerated.

Reasons, checked in this order:

- ``first_signal``: the session has ``min_events`` events and was never generated.
- ``search``: a search is the clearest statement of intent there is.
- ``cart_new_category``: a cart add in a category the session has not carted before.
- ``intent_drift``: the decayed intent vector moved away from the one the page was generated for.
  Hysteresis: drift at or above ``drift_high`` arms the trigger, and it stays armed (through a
  cooldown) until drift falls below ``drift_low``, so a session hovering at the threshold does
  not flap.

Every reason respects a per-session cooldown (event time) once the session has been generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from streams.runtime.settings import Settings


class TriggerReason(StrEnum):
    FIRST_SIGNAL = "first_signal"
    SEARCH = "search"
    CART_NEW_CATEGORY = "cart_new_category"
    INTENT_DRIFT = "intent_drift"


@dataclass(frozen=True, slots=True)
class TriggerPolicy:
    min_events: int = 3
    drift_high: float = 0.35
    drift_low: float = 0.2
    cooldown_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.drift_low > self.drift_high:
            raise ValueError(f"drift_low {self.drift_low} must not exceed drift_high {self.drift_high}")

    @classmethod
    def from_settings(cls, settings: Settings) -> TriggerPolicy:
        return cls(
            min_events=settings.worker.trigger_min_events,
            drift_high=settings.worker.trigger_drift_high,
            drift_low=settings.worker.trigger_drift_low,
            cooldown_ms=int(settings.worker.trigger_cooldown_s * 1000),
        )

    def armed(self, drift: float, was_armed: bool) -> bool:
        """The hysteresis band: arm at ``drift_high``, disarm below ``drift_low``."""
        return drift >= self.drift_high or (was_armed and drift >= self.drift_low)

    def decide(
        self,
        *,
        generated_before: bool,
        n_events: int,
        since_last_regen_ms: int,
        is_search: bool,
        is_new_cart_category: bool,
        drift_armed: bool,
    ) -> TriggerReason | None:
        if not generated_before:
            if n_events >= self.min_events:
                return TriggerReason.FIRST_SIGNAL
        elif since_last_regen_ms < self.cooldown_ms:
            return None
        if is_search:
            return TriggerReason.SEARCH
        if is_new_cart_category:
            return TriggerReason.CART_NEW_CATEGORY
        if generated_before and drift_armed:
            return TriggerReason.INTENT_DRIFT
        return None
