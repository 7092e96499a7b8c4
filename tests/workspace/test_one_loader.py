"""Every entry point loads models through the libraries' one loader (trackgpt.loading / avs.loading).

Fails on a call of ``from_pretrained``, ``from_config``, ``build_model`` or ``torch.load`` anywhere in src/,
training/ or scripts/ outside the loader modules and the files that define what they call.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOADING_CALLS = {"from_pretrained", "from_config", "build_model", "load"}
# file -> why it may make such calls
ALLOWED = {
    "src/trackgpt/trackgpt/loading.py": "the TrackGPT loader",
    "src/avs/avs/loading.py": "the AVS loader",
    "src/trackgpt/trackgpt/brain.py": "loads the brain's LoRA adapter and tokenizer (Hugging Face / peft formats)",
    "src/trackgpt/trackgpt/llava.py": "loads a Hugging Face LLaVA folder",
    "src/trackgpt/trackgpt/embedded.py": "converts the SmolLM2 GGUF into a Hugging Face folder",
    "src/avs/avs/vggish.py": "reads official torchvggish .pth state dicts",
    "src/perception_common/perception_common/checkpoint.py": "the one .pth reader (weights_only)",
    "training/avs/data.py": "reads AVSBench's pickled log-mel tensors (data, not weights)",
    "training/common/checkpoint.py": "reads a run's own resume checkpoint (optimizer, RNG and trainable state)",
}


def _loading_calls(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in LOADING_CALLS:
            continue
        if name == "load" and not (isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "torch"):
            continue  # json.load, yaml.load, ...: only torch.load reads weights
        found.append((node.lineno, "torch.load" if name == "load" else name))
    return found


def test_models_are_loaded_only_through_the_loaders():
    offenders = []
    seen = 0
    for top in ("src", "training", "scripts"):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            calls = _loading_calls(path)
            seen += len(calls)
            if calls and rel not in ALLOWED:
                offenders += [f"{rel}:{line}: {name}(...)" for line, name in calls]
    assert seen > 10, "the walk found no loading call at all: the tree layout changed"
    assert not offenders, "load models with trackgpt.loading.load_model / avs.loading.load_model:\n" + "\n".join(
        offenders
    )


def test_the_allowed_files_exist_and_still_need_it():
    for rel in ALLOWED:
        assert (REPO / rel).is_file(), f"{rel} is gone: drop it from ALLOWED"
        assert _loading_calls(REPO / rel), f"{rel} no longer loads anything: drop it from ALLOWED"


def test_the_check_sees_a_hidden_call(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("import json, torch\ndef f(p):\n    json.load(p)\n    return torch.load(p), M.from_pretrained(p)\n")
    assert [name for _, name in _loading_calls(f)] == ["torch.load", "from_pretrained"]
