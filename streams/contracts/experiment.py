"""Experiment assignment: the one stable-bucket function every part of Vitrine hashes sessions with.

A session's bucket is a keyed BLAKE2b of its id, salted by the experiment id
(``VITRINE_EXPERIMENT_ID``), read as a number in [0, 1). The same session always lands in the same
bucket within one experiment (a shopper never switches arms mid-session), and a new experiment id
draws an independent split. The unsalted bucket (``salt=""``) is the plain BLAKE2b of the id, which
the offline evaluation uses for its stable samples.
"""

from __future__ import annotations

import hashlib

from streams.contracts.storefront import Arm

# BLAKE2b takes a key of at most 64 bytes; the settings validate the experiment id against this.
MAX_SALT_BYTES = 64
DEFAULT_EXPERIMENT_ID = "exp-1"


def stable_bucket(key: str, salt: str = "") -> float:
    """A number in [0, 1), uniform over keys, fixed for a (key, salt) pair."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=salt.encode()).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_arm(session_id: str, *, experiment_id: str, control_share: float, treatment: Arm) -> Arm:
    """The control arm for the first ``control_share`` of buckets, ``treatment`` for the rest."""
    return Arm.CONTROL if stable_bucket(session_id, experiment_id) < control_share else treatment
