"""A byte-level BPE tokenizer trained in well under a second, with no hub: for decoding tests."""

from transformers import PreTrainedTokenizerFast

from verl_rlif.testing.tiny_model import build_tokenizer as build_chat_tokenizer

CORPUS = [
    "The answer is \\boxed{42}.",
    "So x = \\frac{1}{2}, hence \\boxed{\\frac{1}{2}}",
    "Let's think step by step. 6 * 7 = 42",
]


def build_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    return build_chat_tokenizer(CORPUS * 20, vocab_size=vocab_size)
