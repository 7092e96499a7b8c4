"""The perception-worlds command: help, generation with a preview, and the team's readers on its output."""

import json

import cv2
import pytest

from perception_eval.datasets.avsbench import AVSBenchS4
from perception_eval.datasets.referring import InsTrack
from perception_eval.datasets.robust import AVSBenchRobust
from perception_eval.worlds.cli import main


def test_help_lists_both_worlds(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "instruction" in out and "audiovisual" in out and "examples:" in out
    for world in ("instruction", "audiovisual"):
        with pytest.raises(SystemExit) as exit_info:
            main([world, "--help"])
        assert exit_info.value.code == 0
        assert "--videos-per-split" in capsys.readouterr().out


def test_instruction_cli_preview_and_reader(tmp_path):
    out, png = tmp_path / "iw", tmp_path / "iw.png"
    args = ["instruction", "--out", str(out), "--seed", "5", "--videos-per-split", "3", "1", "3",
            "--frames", "4", "5", "--workers", "1", "--no-progress", "--preview", str(png), "--preview-rows", "3"]
    assert main(args) == 0
    sheet = cv2.imread(str(png))
    assert sheet is not None and sheet.shape[0] > 3 * 240 and sheet.shape[1] >= 4 * 320
    world = json.loads((out / "world.json").read_text())
    assert world["seed"] == 5 and world["videos"] == {"train": 3, "val": 1, "test": 3}
    assert world["config"]["frames_max"] == 5
    # The team's InsTrack / Ref-YouTube-VOS reader takes the world as it is.
    for split, n in (("train", 3), ("val", 1), ("test", 3)):
        data = InsTrack(out, split)
        assert len(data) == n
        pairs = list(data.iter_instructions())
        assert pairs and all(e.extra["kind"] in ("explicit", "implicit", "relational") for _, e in pairs)
    # Without --overwrite an existing world is kept and the command fails cleanly.
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0
    # --preview-only redraws the sheet from disk.
    png.unlink()
    assert main(["instruction", "--out", str(out), "--preview-only", "--preview", str(png)]) == 0
    assert png.is_file()


def test_audiovisual_cli_preview_and_readers(tmp_path):
    out, png = tmp_path / "av", tmp_path / "av.png"
    args = ["audiovisual", "--out", str(out), "--seed", "2", "--clips-per-split", "train=4", "val=1", "test=3",
            "--condition-fraction", "train.noise=1", "--condition-fraction", "train.mixed=0",
            "--workers", "1", "--no-progress", "--preview", str(png)]
    assert main(args) == 0
    assert cv2.imread(str(png)) is not None
    assert len(AVSBenchS4(out, "test", audio="wav")) == 3
    robust = AVSBenchRobust(out, "test", audio="wav")
    assert robust.conditions == ("positive", "silence", "noise", "offscreen", "mixed")
    assert len(robust) == 15
    negative = robust.by_condition("silence")[0]
    assert negative.is_negative and not negative.expected_masks().any() and negative.reference_masks().any()
    train = AVSBenchRobust(out, "train", audio="wav")
    assert len(train.by_condition("noise")) == 4 and not train.by_condition("mixed")
    audio, rate = train.by_condition("noise")[0].load_audio()
    assert rate == 44100 and audio.shape == (220500,)


def test_bad_arguments_exit_with_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["instruction", "--out", str(tmp_path), "--videos-per-split", "1", "2"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["audiovisual", "--out", str(tmp_path), "--condition-fraction", "train=0.5"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["instruction", "--out", str(tmp_path), "--preview-only"])
