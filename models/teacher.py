"""What every teacher (offline catalog rules, an OpenAI-compatible endpoint) answers to.

Both tasks are batched: a teacher behind an API amortises a request over many contexts, and the
dataset builder asks for themes first, then keywords given those themes and each context's
retrieval candidates (the student is constrained to the same candidates at serving time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from models.context import ContextFacts


@dataclass(frozen=True, slots=True)
class TeacherInput:
    context: str  # models.context.render(context_facts(...)) text, what the student will read
    facts: ContextFacts  # the same context, structured, for teachers that reason over fields


class Teacher(Protocol):
    def themes(self, contexts: list[TeacherInput]) -> list[str]:
        """One short, readable theme per context."""
        ...

    def keywords(self, contexts: list[TeacherInput], themes: list[str], candidates: list[list[str]]) -> list[list[str]]:
        """3-5 keywords per context, each taken from that context's candidates."""
        ...
