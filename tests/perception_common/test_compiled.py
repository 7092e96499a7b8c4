"""Compiled frame paths (AOTInductor packages): same outputs as the module, built once and cached by what they
depend on, other signatures through the fallback, a bad cached file rebuilt, and the frame-compile modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from perception_common.compiled import FRAME_COMPILE, Compiled, package_key, use_compiled


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 32)
        self.norm = nn.LayerNorm(32)
        self.extra = [torch.randn(32)]  # a plain attribute holding a weight: part of the key too

    def forward(self, x):
        return self.norm(x + self.fc2(F.gelu(self.fc1(x)))) * self.extra[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("compiled")
    module = _Block().eval()
    x = torch.randn(4, 32)
    return directory, module, x, Compiled(module, (x,), directory=directory).build()


def test_package_gives_the_module_outputs_and_is_cached(built):
    directory, module, x, compiled = built
    assert compiled.cached is False and compiled.path.is_file() and compiled.path.parent == directory
    y = torch.randn(4, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(y), module(y), rtol=1e-4, atol=1e-5)
    again = Compiled(module, (x,), directory=directory).build()
    assert again.cached is True and again.path == compiled.path
    with torch.no_grad():
        torch.testing.assert_close(again(y), module(y), rtol=1e-4, atol=1e-5)


def test_key_follows_weights_plain_attributes_signature_and_threads(built):
    _directory, module, x, compiled = built
    n = compiled.threads
    assert n == torch.get_num_threads() and package_key(module, (x,), n) == compiled.key
    assert package_key(module, (x,), n + 1) != compiled.key  # the threads are written into the package
    assert package_key(module, (torch.randn(8, 32),), n) != compiled.key
    assert package_key(module, (x.double(),), n) != compiled.key
    other = _Block().eval()
    with torch.no_grad():
        other.fc1.weight[0, 0] += 1e-3
    assert package_key(other, (x,), n) != compiled.key
    other = _Block().eval()
    other.extra[0] = other.extra[0] + 1
    assert package_key(other, (x,), n) != compiled.key


def test_other_signatures_go_to_the_fallback_or_are_refused(built):
    directory, module, x, compiled = built
    with pytest.raises(ValueError, match="was built for"):
        compiled(torch.randn(2, 32))
    calls = []
    with_fallback = Compiled(module, (x,), directory=directory, fallback=lambda t: calls.append(t) or "fallback")
    with_fallback.build()
    assert with_fallback(torch.randn(2, 32)) == "fallback" and len(calls) == 1
    with pytest.raises(RuntimeError, match="build"):
        Compiled(module, (x,), directory=directory)(x)


def test_a_corrupt_cached_package_is_built_again(tmp_path, built):
    _directory, module, x, _compiled = built
    bad = Compiled(module, (x,), directory=tmp_path)
    bad.path.parent.mkdir(parents=True, exist_ok=True)
    bad.path.write_bytes(b"not a package")
    bad.build()
    assert bad.cached is False and bad.path.stat().st_size > 1000
    with torch.no_grad():
        torch.testing.assert_close(bad(x), module(x), rtol=1e-4, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]


def test_frame_compile_modes(built):
    directory, module, x, _compiled = built
    asked = []

    def compile_path(*, build):
        asked.append(build)
        compiled = Compiled(module, (x,), directory=directory)
        return compiled.build() if build or compiled.path.is_file() else None

    assert set(FRAME_COMPILE) == {"auto", "on", "off"}
    assert use_compiled("off", "cpu", compile_path, hint="x") == "traced" and asked == []
    assert use_compiled("auto", "cuda:0", compile_path, hint="x").startswith("traced (compiled frame paths are")
    assert asked == []
    assert use_compiled("auto", "cpu", compile_path, hint="x") == "compiled (cached)" and asked == [False]
    assert use_compiled(" ON ", "cpu", compile_path, hint="x") == "compiled (cached)" and asked == [False, True]
    with pytest.raises(ValueError, match="frame_compile must be one of auto, on, off, got 'fast'"):
        use_compiled("fast", "cpu", compile_path, hint="x")

    def missing(*, build):
        return None

    assert "`trackgpt-compile --model m` builds one" in use_compiled("auto", "cpu", missing,
                                                                     hint="trackgpt-compile --model m")


def test_an_unwritable_cache_is_a_compile_error(tmp_path, built):
    from perception_common.compiled import CompileError

    _directory, module, x, _compiled = built
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CompileError, match="cannot compile _Block"):
        Compiled(module, (x,), directory=blocker / "cache").build()
