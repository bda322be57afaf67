"""A byte-level BPE tokenizer trained in well under a second, with no hub, and reward-worker samples built with it."""

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast
from verl import DataProto

from verl_rlif.testing.tiny_model import build_tokenizer as build_chat_tokenizer

RESPONSE_LEN = 24

CORPUS = [
    "The answer is \\boxed{42}.",
    "So x = \\frac{1}{2}, hence \\boxed{\\frac{1}{2}}",
    "Let's think step by step. 6 * 7 = 42",
]


def build_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    return build_chat_tokenizer(CORPUS * 20, vocab_size=vocab_size)


def one_sample(tokenizer, response: str, ground_truth=None, data_source="math") -> DataProto:
    """One trajectory shaped like verl's agent loop hands it to a reward worker (padded response)."""
    prompt = torch.tensor([tokenizer.encode("Q:")])
    ids = tokenizer.encode(response)[:RESPONSE_LEN]
    responses = torch.full((1, RESPONSE_LEN), tokenizer.pad_token_id)
    responses[0, : len(ids)] = torch.tensor(ids)
    mask = torch.zeros(1, prompt.shape[1] + RESPONSE_LEN, dtype=torch.long)
    mask[0, : prompt.shape[1] + len(ids)] = 1
    non_tensor = {"data_source": np.array([data_source], dtype=object), "extra_info": np.array([{}], dtype=object)}
    if ground_truth is not None:
        non_tensor["reward_model"] = np.array([{"ground_truth": ground_truth}], dtype=object)
    return DataProto.from_dict(
        tensors={"prompts": prompt, "responses": responses, "attention_mask": mask}, non_tensors=non_tensor
    )
