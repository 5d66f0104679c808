"""Keyword decoding constrained to a candidate list: a token-id trie the greedy loop walks row by row.

The student writes ``kw1 | kw2 | kw3`` (``models.context``); here every keyword must be one of the
candidates retrieved for the placement, none twice and at most ``max_keywords``. The trie holds the
candidates' token ids; a walk over it says which token ids may come next, and the keywords are read
from the walk itself (not from detokenised text), so the guarantee holds whatever the model does.

Hand-written rather than a library (e.g. transformers' ``Constraint`` classes) because those need torch
and express "one of these phrases", not "a list of distinct phrases, separated, at most N".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from models.context import KEYWORD_SEPARATOR, format_keywords

log = logging.getLogger(__name__)

TokenIds = tuple[int, ...]


class KeywordTokenizer:
    """Keyword -> token ids exactly as the model writes it inside ``kw1 | kw2``, cached per keyword.

    A keyword is usable only if its ids decode back to it (no unknown pieces, no normalisation) and it
    tokenises the same next to a separator as alone, which holds for whitespace-splitting tokenizers
    (T5's Metaspace); otherwise the walk's ids would not be the ids the model learned.
    """

    def __init__(self, tokenizer: Tokenizer, eos_id: int) -> None:
        self._tokenizer = tokenizer
        self.eos_id = eos_id
        self.separator: TokenIds = tuple(tokenizer.encode(KEYWORD_SEPARATOR.strip(), add_special_tokens=False).ids)
        if not self.separator:
            raise ValueError("the tokenizer maps the keyword separator to no tokens")
        self._cache: dict[str, TokenIds | None] = {}

    def ids(self, keywords: Sequence[str]) -> list[TokenIds | None]:
        """Token ids per keyword, ``None`` where the keyword cannot be written token by token."""
        todo = [kw for kw in dict.fromkeys(keywords) if kw not in self._cache]
        if todo:
            alone = self._tokenizer.encode_batch(todo, add_special_tokens=False)
            joined = self._tokenizer.encode_batch(
                [KEYWORD_SEPARATOR.join((kw, kw)) for kw in todo], add_special_tokens=False
            )
            decoded = self._tokenizer.decode_batch([e.ids for e in alone])
            for kw, one, two, text in zip(todo, alone, joined, decoded, strict=True):
                ids = tuple(one.ids)
                in_context = tuple(two.ids) == ids + self.separator + ids
                self._cache[kw] = ids if ids and self.eos_id not in ids and text == kw and in_context else None
        return [self._cache[kw] for kw in keywords]


@dataclass(eq=False, slots=True)
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    keyword: int | None = None  # index of the candidate whose tokens end here
    below: frozenset[int] = frozenset()  # candidates ending here or deeper


class KeywordTrie:
    """Immutable token trie over usable candidate keywords; start one ``KeywordWalk`` per decoded row."""

    def __init__(
        self,
        keywords: Sequence[str],
        token_ids: Sequence[TokenIds],
        separator: TokenIds,
        eos_id: int,
        max_keywords: int,
    ) -> None:
        if max_keywords < 1:
            raise ValueError("max_keywords must be >= 1")
        if not separator:
            raise ValueError("the keyword separator needs at least one token")
        self.keywords = tuple(keywords)
        self.separator = separator
        self.eos_id = eos_id
        self.max_keywords = max_keywords
        self.root = _Node()
        below: dict[int, set[int]] = {}
        for index, ids in enumerate(token_ids):
            node = self.root
            below.setdefault(id(node), set()).add(index)
            for token in ids:
                node = node.children.setdefault(token, _Node())
                below.setdefault(id(node), set()).add(index)
            node.keyword = index
        self._freeze(self.root, below)

    def _freeze(self, node: _Node, below: dict[int, set[int]]) -> None:
        node.below = frozenset(below.get(id(node), ()))
        for child in node.children.values():
            self._freeze(child, below)

    @classmethod
    def build(cls, candidates: Sequence[str], tokens: KeywordTokenizer, max_keywords: int = 3) -> KeywordTrie:
        """Distinct candidates in the keyword format that ``tokens`` can write; the rest are dropped (logged)."""
        keywords: list[str] = []
        for kw in dict.fromkeys(candidates):
            try:
                format_keywords([kw])
            except ValueError:
                continue
            keywords.append(kw)
        ids = tokens.ids(keywords)
        usable = [(kw, t) for kw, t in zip(keywords, ids, strict=True) if t is not None]
        if len(usable) < len(candidates):
            log.debug("keyword trie: %d of %d candidates usable", len(usable), len(candidates))
        return cls([kw for kw, _ in usable], [t for _, t in usable], tokens.separator, tokens.eos_id, max_keywords)

    def start(self) -> KeywordWalk:
        return KeywordWalk(self)


@dataclass(frozen=True, slots=True)
class _State:
    """One reading of the tokens so far: inside a keyword at ``node``, or inside a separator at ``sep``."""

    node: _Node
    sep: int | None
    done: tuple[int, ...]

    def written(self) -> tuple[int, ...]:
        """Keywords if the output ended here: those done plus the one this state stands on, if complete."""
        kw = self.node.keyword
        if self.sep is None and kw is not None and kw not in self.done:
            return (*self.done, kw)
        return self.done


class KeywordWalk:
    """One row's position in the trie: which keywords are written, which token ids may follow.

    The separator's first token can also continue a keyword (T5's ``▁`` starts both ``▁|`` and the next
    word of ``running shoes``), so the walk keeps every reading consistent with the tokens so far until
    a later token tells them apart.
    """

    __slots__ = ("_states", "_trie", "finished", "result")

    def __init__(self, trie: KeywordTrie) -> None:
        self._trie = trie
        self._states: list[_State] = [_State(trie.root, None, ())]
        self.finished = False
        self.result: tuple[int, ...] = ()

    def _moves(self, state: _State) -> list[tuple[int, _State | None]]:
        """(token, next state) pairs; next state ``None`` means the token is EOS and ends in ``state``."""
        trie = self._trie
        if state.sep is not None:
            nxt: int | None = state.sep + 1
            if nxt == len(trie.separator):
                nxt = None
            return [(trie.separator[state.sep], _State(trie.root, nxt, state.done))]
        done = state.done
        # A subtree is open while it still holds a keyword not yet written.
        moves: list[tuple[int, _State | None]] = [
            (token, _State(child, None, done))
            for token, child in state.node.children.items()
            if any(kw not in done for kw in child.below)
        ]
        complete = state.written()
        if len(complete) > len(done):
            if len(complete) < trie.max_keywords and len(trie.root.below) > len(complete):
                sep = trie.separator
                moves.append((sep[0], _State(trie.root, 1 if len(sep) > 1 else None, complete)))
            moves.append((trie.eos_id, None))
        elif state.node is trie.root and not trie.root.below:
            moves.append((trie.eos_id, None))  # no candidates: the only valid output is the empty list
        return moves

    def allowed(self) -> npt.NDArray[np.int64]:
        """Token ids that keep the output a list of distinct candidates (never empty)."""
        if self.finished:
            return np.array([self._trie.eos_id], dtype=np.int64)
        tokens = {token for state in self._states for token, _ in self._moves(state)}
        return np.fromiter(tokens, dtype=np.int64, count=len(tokens))

    def advance(self, token: int) -> None:
        if self.finished:
            return
        nexts: list[_State] = []
        for state in self._states:
            for move, nxt in self._moves(state):
                if move != token:
                    continue
                if nxt is None:
                    self.finished = True
                    self.result = state.written()
                    self._states = []
                    return
                nexts.append(nxt)
        if not nexts:
            raise ValueError(f"token {token} is not allowed here")
        self._states = nexts

    def keywords(self) -> list[str]:
        """Keywords written; when cut short (max tokens), the longest complete reading."""
        indices = self.result if self.finished else max((s.written() for s in self._states), key=len)
        return [self._trie.keywords[i] for i in indices]

    def text(self) -> str:
        return format_keywords(self.keywords())
