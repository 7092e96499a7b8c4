"""perception-models verify: a model folder loads as the nodes load it, or one line says why (exit 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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
    assert main(["verify", str(trackgpt_shipped()), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "trackgpt" and report["brain_source"] == "smollm2" and report["brain_naming"] == "scene"
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


FIXTURES = Path(__file__).parents[1] / "avs" / "fixtures" / "avsbench"


def test_list_names_every_published_checkpoint_with_its_memory_and_importer(capsys):
    assert main(["list", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert {"lisa-7b-v1", "lisa-13b-llama2-v1", "avsbench-avss-pvt", "torchvggish"} <= set(entries)
    assert entries["lisa-7b-v1"]["hf_repo"] == "xinlai/LISA-7B-v1"
    assert entries["lisa-7b-v1"]["int4_gb"] < entries["lisa-7b-v1"]["fp16_gb"]
    assert entries["avsbench-avss-pvt"]["importer"].startswith("avsbench")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "licence:" in out and "fp16 ~15.3 GB, int4 ~5.3 GB" in out


def test_import_avsbench_writes_a_folder_that_verifies(tmp_path, capsys):
    import torch

    from avs.vggish import build_vggish

    vggish = tmp_path / "vggish-tiny.pth"
    torch.save(build_vggish("vggish-tiny").state_dict(), vggish)
    dst = tmp_path / "s4"
    argv = ["import", "avsbench", str(FIXTURES / "s4_resnet.pth"), str(dst), "--vggish", str(vggish),
            "--audio-encoder", "vggish-tiny"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "resnet_tiny" in out and "one mask" in out and f"model:={dst}" in out
    assert main(["verify", str(dst), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "avs" and report["gate"] == "off" and report["clip_frames"] == 5
    assert report["decoder_style"] == "avsbench"
    assert main(argv) == 1  # DST is not empty now
    assert "--force" in capsys.readouterr().err
    bad = ["import", "avsbench", str(vggish), str(tmp_path / "x"), "--vggish", str(vggish),
           "--audio-encoder", "vggish-tiny"]  # a VGGish file is not a TPAVI checkpoint
    assert main(bad) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an AVSBench TPAVI checkpoint" in err


def test_fetch_without_network_fails_at_once_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["fetch", "lisa-7b-v1", "/nonexistent/x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no network" in err and "xinlai/LISA-7B-v1" in err
    assert main(["fetch", "avsbench-avss-pvt", "/nonexistent/x"]) == 1
    assert "by hand" in capsys.readouterr().err
    assert main(["fetch", "nothing-like-it", "/nonexistent/x"]) == 1
    assert "known:" in capsys.readouterr().err


def test_import_lisa_writes_a_folder_that_verifies_and_a_lisa_folder_names_the_command(tmp_path, capsys):
    lisa = Path(__file__).parents[1] / "trackgpt" / "fixtures" / "lisa"
    dst = tmp_path / "lisa-import"
    argv = ["import", "lisa", str(lisa / "lisa_tiny"), str(dst), "--clip", str(lisa / "clip_tiny"),
            "--precision", "fp32"]
    assert main(argv) == 0
    assert f"model:={dst}" in capsys.readouterr().out
    assert main(["verify", str(dst), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "trackgpt" and report["brain_source"] == "folder" and report["brain_naming"] == "answer"
    assert main(argv) == 1  # DST exists now
    assert "not empty" in capsys.readouterr().err
    # the raw LISA folder: refused with the command that imports it
    assert main(["verify", str(lisa / "lisa_tiny")]) == 1
    err = capsys.readouterr().err
    assert "LISA checkpoint" in err and "perception-models import lisa" in err
