"""A small Unigram tokenizer trained on our own contexts, themes and keywords.

A general-purpose 32k vocabulary would spend most of the student's parameters on embeddings it
never uses; 2-4k pieces learned from this text keep contexts short (taxonomy paths and price bands
become single pieces) and the embedding table small. Special ids follow T5: pad=0 (also the
decoder start), eos=1, unk=2.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram
from tokenizers.trainers import UnigramTrainer
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_VOCAB = 2000


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> Tokenizer:
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, UNK],
        unk_token=UNK,
        max_piece_length=16,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    ids = (tok.token_to_id(PAD), tok.token_to_id(EOS), tok.token_to_id(UNK))
    if ids != (PAD_ID, EOS_ID, UNK_ID):
        raise ValueError(f"special token ids {ids} are not T5's (0, 1, 2)")
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, EOS_ID)])
    return tok


def to_transformers(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        model_input_names=["input_ids", "attention_mask"],
    )
