"""perception-models verify: a model folder loads as the nodes load it, or one line says why (exit 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from avs.loading import load_model as load_avs
from avs.loading import shipped_folder as avs_shipped
from perception_bringup.models_cli import main, model_kind
from trackgpt.loading import shipped_folder as trackgpt_shipped


def test_the_shipped_models_verify(capsys):
    assert main(["verify", str(avs_shipped()), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "avs" and report["gate"] != "off" and report["parameters"] > 1_000_000
    assert set(report["dtypes"]) == {"float32"} and report["device"] == "cpu"
    assert main(["verify", str(trackgpt_shipped())]) == 0
    out = capsys.readouterr().out
    assert "kind" in out and "trackgpt" in out and "brain_source" in out and "loads: OK" in out


def test_a_folder_with_a_missing_tensor_is_refused(tmp_path, capsys):
    folder = tmp_path / "avs"
    load_avs("config:tiny").save_pretrained(folder)
    tensors = load_file(folder / "model.safetensors")
    gone = sorted(tensors)[0]
    del tensors[gone]
    save_file(tensors, str(folder / "model.safetensors"))
    assert main(["verify", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and gone in err and str(folder) in err


def test_what_is_not_a_model_folder(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 1
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert'"):
        model_kind(tmp_path)
    lisa = tmp_path / "lisa"
    lisa.mkdir()
    (lisa / "config.json").write_text(json.dumps({"model_type": "llava", "architectures": ["LISAForCausalLM"]}))
    assert main(["verify", str(lisa)]) == 1
    assert "LISA checkpoint" in capsys.readouterr().err


def test_the_console_script_answers_help_and_exit_codes(tmp_path):
    shutil.copytree(avs_shipped(), tmp_path / "m")
    ok = subprocess.run([sys.executable, "-m", "perception_bringup.models_cli", "verify", str(tmp_path / "m")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "loads: OK" in ok.stdout
    (tmp_path / "m" / "model.safetensors").write_bytes(b"truncated")
    bad = subprocess.run([sys.executable, "-m", "perception_bringup.models_cli", "verify", str(tmp_path / "m")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
