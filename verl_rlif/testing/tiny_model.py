"""A tiny chat model built offline in seconds: byte-level BPE tokenizer + a small Llama taught the answer format.

Random weights would answer with noise, so every vote would be empty. 150 optimiser steps (~15 s) on
templated arithmetic replies ("The answer is \\boxed{N}.", right about half the time) give a model whose groups
disagree in a useful way: most responses carry an answer, some agree. No hub, no download.
"""

from __future__ import annotations

import os
import random

import torch

from verl_rlif.testing.data import arithmetic_problems, verl_rows

PAD, BOS, EOS = "<pad>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _texts(tokenizer, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for row in verl_rows(arithmetic_problems(count, seed=seed, max_operand=12), "train"):
        truth = row["reward_model"]["ground_truth"]
        answer = truth if rng.random() < 0.5 else str(rng.randint(1, 81))
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        texts.append(f"{prompt}The answer is \\boxed{{{answer}}}.{EOS}\n")
    return texts


def build_tokenizer(corpus: list[str], vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=BOS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(directory: str, seed: int = 0, steps: int = 150, hidden_size: int = 64) -> str:
    """Save a tokenizer and a ~0.1M-parameter Llama trained on the answer format to ``directory``; return it."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(_texts(_TemplateOnly(), 200, seed))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    _teach_format(model, tokenizer, _texts(tokenizer, 150, seed + 1), steps)
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id).save_pretrained(
        directory
    )
    return directory


def _teach_format(model, tokenizer, texts: list[str], steps: int, batch_size: int = 16) -> None:
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    labels = ids.masked_fill(mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(texts), (batch_size,), generator=g)
        loss = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


class _TemplateOnly:
    """Applies the chat template before a tokenizer exists (the tokenizer is trained on templated text)."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        from jinja2 import Template

        return Template(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=add_generation_prompt)
