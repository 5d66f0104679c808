"""Constrained keyword decoding: whatever the model (or a random walker) picks, the output is a list of
distinct candidates, at most N long, and its token ids decode to exactly that list."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer

from models.constrained import KeywordTokenizer, KeywordTrie
from models.context import format_keywords, parse_keywords
from models.student import Student
from tests.student_fixtures import WORDS, TinyStudent, corpus


@pytest.fixture(scope="module")
def tokenizer(tiny: TinyStudent) -> Tokenizer:
    return Tokenizer.from_file(str(tiny.onnx_dir / "tokenizer.json"))


def random_candidates(rng: random.Random) -> list[str]:
    """Shop words, multi-word phrases, phrases that are prefixes of others, junk the tokenizer cannot write."""
    out: list[str] = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.random()
        if kind < 0.4:
            out.append(rng.choice(WORDS))
        elif kind < 0.8:
            out.append(" ".join(rng.sample(WORDS, rng.randint(2, 4))))
        elif kind < 0.9 and out:
            out.append(f"{rng.choice(out)} {rng.choice(WORDS)}")  # extends an earlier candidate
        else:
            out.append(rng.choice(["a|b", "", "  spaced  out ", "zzq", "\u00fcber", "x"]))
    return out


def check(text: str, candidates: list[str], max_keywords: int) -> list[str]:
    keywords = parse_keywords(text)
    assert set(keywords) <= set(candidates), (text, candidates)
    assert len(keywords) == len(set(keywords)) <= max_keywords
    assert format_keywords(keywords) == text  # the text is exactly the keyword format, nothing else
    return keywords


def test_random_walks_stay_inside_candidates(tokenizer: Tokenizer) -> None:
    """A walker choosing uniformly among allowed tokens explores separators, prefixes and the N limit."""
    rng = random.Random(0)
    tokens = KeywordTokenizer(tokenizer, eos_id=1)
    lengths: list[int] = []
    for _ in range(400):
        candidates = random_candidates(rng)
        max_keywords = rng.choice([1, 2, 3, 5])
        trie = KeywordTrie.build(candidates, tokens, max_keywords)
        walk = trie.start()
        ids: list[int] = []
        for _ in range(rng.choice([6, 200])):
            allowed = walk.allowed()
            assert allowed.size > 0 and len(set(allowed.tolist())) == allowed.size
            token = int(rng.choice(allowed.tolist()))
            walk.advance(token)
            if walk.finished:
                break
            ids.append(token)
        keywords = check(walk.text(), candidates, max_keywords)
        if walk.finished:
            # The ids the model would have emitted decode to the same list the walk reports.
            assert parse_keywords(tokenizer.decode(ids)) == keywords
            assert keywords or not trie.keywords
        lengths.append(len(keywords))
    assert max(lengths) >= 3  # the walker did write several keywords, not only one


def test_disallowed_token_is_refused(tokenizer: Tokenizer) -> None:
    trie = KeywordTrie.build(["yoga mat"], KeywordTokenizer(tokenizer, eos_id=1), 2)
    walk = trie.start()
    banned = next(t for t in range(tokenizer.get_vocab_size()) if t not in walk.allowed())
    with pytest.raises(ValueError, match="not allowed"):
        walk.advance(banned)


def test_unwritable_candidates_are_dropped(tokenizer: Tokenizer) -> None:
    trie = KeywordTrie.build(
        ["yoga mat", "a|b", "", " yoga mat", "zzq", "yoga mat"], KeywordTokenizer(tokenizer, eos_id=1), 3
    )
    assert trie.keywords == ("yoga mat",)


def test_no_candidates_gives_empty_output(student: Student) -> None:
    trie = student.keyword_trie([])
    assert student.generate(corpus(n=3), constraint=trie) == ["", "", ""]
    assert trie.start().allowed().tolist() == [student.special.eos]


def test_random_model_never_escapes(student: Student) -> None:
    """The untrained model would write anything; under the constraint it writes only candidates."""
    rng = random.Random(1)
    texts = corpus(n=16, seed=3)
    written = 0
    for _ in range(40):
        candidates = random_candidates(rng)
        max_keywords = rng.choice([1, 2, 3])
        trie = student.keyword_trie(candidates, max_keywords)
        inputs = rng.sample(texts, 4)
        outs = student.generate(inputs, constraint=trie, max_new_tokens=rng.choice([4, 24]), batch_size=3)
        for text in outs:
            written += len(check(text, candidates, max_keywords))
    assert written > 0


def test_constraint_masks_the_model_choice(student: Student) -> None:
    """Constrained ids are a path through the trie: every emitted id was in the allowed set."""
    candidates = ["running shoes", "running", "yoga mat", "desk lamp"]
    trie = student.keyword_trie(candidates, 3)
    texts = corpus(n=8, seed=9)
    outs = student.generate(texts, constraint=trie)
    for ids, text in zip(student.generate_ids(texts, constraint=trie), outs, strict=True):
        walk = trie.start()
        for token in ids:
            assert token in walk.allowed()
            walk.advance(token)
        assert walk.text() == text
