"""TrackGPT training: the three stages lower the loss, exact resume, exported models load, bad paths fail early."""

from __future__ import annotations

import csv
import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from perception_eval.worlds.instruction import InstructionWorldConfig, generate_instruction_world
from trackgpt import TrackGPT
from training.common.errors import SetupError
from training.common.toydata import write_llava_instruct, write_reason_seg, write_refcoco, write_semantic_seg
from training.trackgpt import data as tg_data
from training.trackgpt import train as tg_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("tg_toy")
    write_semantic_seg(root / "ade")
    write_refcoco(root / "refer")
    write_llava_instruct(root / "llava")
    write_reason_seg(root / "reason")
    world_cfg = InstructionWorldConfig(width=96, height=72, frames_min=4, frames_max=6)
    generate_instruction_world(root / "world", seed=3, videos={"train": 3, "val": 2}, config=world_cfg, progress=False)
    return root


def stage1_datasets(toy):
    return [
        {"name": "ade", "type": "semantic_seg", "root": str(toy / "ade"), "classes": "classes.txt", "ratio": 3},
        {
            "name": "refcoco",
            "type": "refcoco",
            "root": str(toy / "refer"),
            "image_root": str(toy / "refer" / "images"),
            "ratio": 3,
        },
        {
            "name": "llava",
            "type": "llava_instruct",
            "json": str(toy / "llava" / "llava_instruct.json"),
            "image_root": str(toy / "llava" / "images"),
            "ratio": 1,
        },
        {"name": "reasonseg", "type": "reason_seg", "root": str(toy / "reason"), "ratio": 1},
    ]


def _argv(out, datasets, *extra, frames=3):
    items = [
        f"output_dir={out}",
        "progress=false",
        "train.batch_size=2",
        "train.log_every=1",
        "optim.lr=0.002",
        "schedule.warmup_steps=2",
        f"data.datasets={datasets!r}",
        f"data.frames_per_clip={frames}",
        *extra,
    ]
    argv = []
    for item in items:
        argv += ["--set", item]
    return argv


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _drops(out, key="loss"):
    values = [float(r[key]) for r in _rows(out / "train_log.csv")]
    return np.mean(values[-5:]) < np.mean(values[:5]), values


def test_three_stages_lower_the_loss_and_chain(toy, tmp_path):
    s1, s2, s3 = tmp_path / "stage1", tmp_path / "stage2", tmp_path / "stage3"
    refer_val = [
        {
            "name": "refcoco",
            "type": "refcoco",
            "root": str(toy / "refer"),
            "image_root": str(toy / "refer" / "images"),
            "split": "val",
        }
    ]
    assert (
        tg_train.main(
            _argv(
                s1,
                stage1_datasets(toy),
                "train.steps=20",
                "stage=1",
                f"eval.datasets={refer_val!r}",
                "eval.best_metric=gIoU",
                frames=1,
            )
        )
        == 0
    )
    ok, values = _drops(s1)
    assert ok, values
    assert {"gIoU", "cIoU"} <= set(_rows(s1 / "eval_log.csv")[0])

    ytvos = [{"name": "ytvos", "type": "ref_youtube_vos", "root": str(toy / "world"), "split": "train"}]
    assert (
        tg_train.main(
            _argv(
                s2, ytvos, "train.steps=16", "stage=2", f"model.init_from={s1 / 'model'}", "data.reference_frame=random"
            )
        )
        == 0
    )
    ok, values = _drops(s2)
    assert ok, values
    first2 = float(_rows(s2 / "train_log.csv")[0]["loss_text"])
    fresh = tmp_path / "fresh2"
    assert tg_train.main(_argv(fresh, ytvos, "train.steps=1", "data.reference_frame=random")) == 0
    assert first2 < float(_rows(fresh / "train_log.csv")[0]["loss_text"])  # stage 1's training was carried over

    instrack = [{"name": "instrack", "type": "instrack", "root": str(toy / "world"), "split": "train"}]
    val = [{"name": "val", "type": "instrack", "root": str(toy / "world"), "split": "val"}]
    assert (
        tg_train.main(
            _argv(
                s3,
                instrack,
                "train.steps=16",
                "stage=3",
                f"model.init_from={s2 / 'model'}",
                "data.reference_frame=first",
                f"eval.datasets={val!r}",
                "eval.max_items=2",
                "eval.every=8",
            )
        )
        == 0
    )
    ok, values = _drops(s3)
    assert ok, values
    evals = _rows(s3 / "eval_log.csv")
    assert [int(r["step"]) for r in evals] == [8, 16] and {"J&F", "J", "F", "purport"} <= set(evals[0])
    assert (s3 / "curves.png").is_file() and (s3 / "model" / "training_config.yaml").is_file()


def test_exported_model_loads_and_tracks(toy, tmp_path):
    out = tmp_path / "run"
    ytvos = [{"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}]
    assert tg_train.main(_argv(out, ytvos, "train.steps=3")) == 0
    model = TrackGPT.from_pretrained(out / "model")
    assert model.brain.has_lora
    frame = np.zeros((72, 96, 3), np.uint8)
    reasoning = model.reason(frame, "the red ball")
    q = reasoning.referring_query
    decoded = model.decode(
        model.encode_frame(frame), referring_query=q, online_query=q, purport_query=reasoning.purport_query
    )
    assert decoded.mask.shape == (72, 96) and 0.0 <= decoded.purport_score <= 1.0
    # the trained <TK>/<PO> rows are in the saved model, not the initial mean rows
    saved = load_file(out / "model" / "model.safetensors")
    fresh = TrackGPT.from_config("tiny").brain.added_token_rows()["input"]
    assert not torch.allclose(saved["brain.added_tokens.input"], fresh)


def test_resume_after_k_steps_gives_the_uninterrupted_weights(toy, tmp_path):
    ytvos = [{"name": "w", "type": "ref_youtube_vos", "root": str(toy / "world"), "split": "train"}]
    common = (
        "train.steps=6",
        "checkpoint.every=3",
        "checkpoint.keep_last=0",
        "data.reference_frame=random",
        "train.grad_accum=2",
    )
    full = tmp_path / "full"
    assert tg_train.main(_argv(full, ytvos, *common)) == 0
    resumed = tmp_path / "resumed"
    argv = ["--resume", str(full / "checkpoints" / "step_000003"), "--set", f"output_dir={resumed}"]
    assert tg_train.main(argv) == 0
    for name in ("model.safetensors", "brain_adapter/adapter_model.safetensors"):
        a, b = load_file(full / "model" / name), load_file(resumed / "model" / name)
        assert a.keys() == b.keys()
        assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) <= 1e-6, name
    assert [r["loss"] for r in _rows(resumed / "train_log.csv")] == [r["loss"] for r in _rows(full / "train_log.csv")][
        3:
    ]


@pytest.mark.parametrize(
    ("index", "key", "value"),
    [
        (0, "root", "/nonexistent/ade"),
        (0, "classes", "missing.txt"),
        (1, "image_root", "/nonexistent/coco"),
        (2, "json", "/nonexistent/llava.json"),
        (3, "root", "/nonexistent/reason"),
    ],
)
def test_missing_paths_fail_before_training(toy, tmp_path, capsys, index, key, value):
    datasets = stage1_datasets(toy)
    datasets[index][key] = value
    out = tmp_path / "run"
    assert tg_train.main(_argv(out, datasets, "train.steps=2", frames=1)) == 2
    err = capsys.readouterr().err
    assert "error" in err and value in err
    assert not (out / "checkpoints").exists()


def test_missing_image_and_bad_entries_are_named(toy, tmp_path, capsys):
    refer = tmp_path / "refer"
    write_refcoco(refer)
    victim = sorted((refer / "images").iterdir())[0]
    victim.unlink()
    bad = [{"name": "r", "type": "refcoco", "root": str(refer), "image_root": str(refer / "images")}]
    assert tg_train.main(_argv(tmp_path / "a", bad, frames=1)) == 2
    assert str(victim) in capsys.readouterr().err
    assert tg_train.main(_argv(tmp_path / "b", [{"type": "coco_panoptic", "root": "x"}], frames=1)) == 2
    assert "unknown type" in capsys.readouterr().err
    typo = [{"type": "reason_seg", "root": str(toy / "reason"), "splt": "train"}]
    assert tg_train.main(_argv(tmp_path / "c", typo, frames=1)) == 2
    assert "splt" in capsys.readouterr().err
    assert tg_train.main(_argv(tmp_path / "d", [], frames=1)) == 2
    assert "data.datasets is empty" in capsys.readouterr().err
    missing_brain = ["--set", "model.config=llava-7b-sam-vit-h", "--set", "model.overrides={brain: {path: /no/llava}}"]
    assert tg_train.main(_argv(tmp_path / "e", stage1_datasets(toy), frames=1) + missing_brain) == 2
    assert "/no/llava" in capsys.readouterr().err


# ----------------------------------------------------------------------------- readers and the stream
def _rle_encode(mask: np.ndarray) -> dict:
    """pycocotools' compressed RLE (column-major run lengths, LEB128-like string) -- the inverse under test."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return {"size": list(mask.shape), "counts": "".join(out)}


def test_rle_and_polygon_masks():
    rng = np.random.default_rng(0)
    mask = np.zeros((23, 31), bool)
    mask[3:15, 4:20] = True
    mask[rng.random(mask.shape) < 0.05] = True
    assert np.array_equal(tg_data.rle_decode(_rle_encode(mask)), mask)
    counts = [int(c) for c in np.diff(np.flatnonzero(np.diff(np.r_[-1, mask.T.reshape(-1).astype(int), -1])))]
    assert np.array_equal(tg_data.annotation_mask({"size": [23, 31], "counts": counts}, 23, 31), mask)
    square = tg_data.annotation_mask([[2, 2, 10, 2, 10, 8, 2, 8]], 12, 12)
    assert square[5, 5] and not square[0, 0] and square.sum() == 9 * 7


def test_refs_file_may_hold_plain_data_only(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1, "obj": SetupError("a class instance")}]))
    with pytest.raises(SetupError, match="plain data"):
        tg_data.read_refs(path)


def test_semantic_labels_with_reduce_zero_label(tmp_path):
    from perception_eval.datasets import write_index_mask

    root = tmp_path / "ade"
    (root / "images" / "training").mkdir(parents=True)
    import cv2

    cv2.imwrite(str(root / "images" / "training" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    label = np.zeros((8, 8), np.uint8)
    label[:4] = 2  # class 2 in the file = index 1 after reduction ("tree")
    label[4:, :4] = 255
    write_index_mask(root / "annotations" / "training" / "a.png", label)
    (root / "objectInfo150.csv").write_text("Idx,Ratio,Train,Val,Name\n1,0.1,1,1,wall\n2,0.1,1,1,tree;trees\n")
    ds = tg_data.SemanticSeg(
        "ade",
        {
            "type": "semantic_seg",
            "root": str(root),
            "classes": "objectInfo150.csv",
            "reduce_zero_label": True,
            "min_pixels": 1,
        },
    )
    sample = ds.sample(0, np.random.default_rng(0))
    assert sample.text == "tree" and sample.masks[0][:4].all() and not sample.masks[0][4:].any()
    assert sample.ignore[0][4:].all() and not sample.ignore[0][:4].any()  # 0 ("other") and 255 are ignored


def test_stream_follows_the_ratios_and_is_a_function_of_the_sample_number(toy):
    specs = stage1_datasets(toy)
    specs[3]["ratio"] = 0
    datasets = [tg_data.build_dataset(s, frames_per_clip=1, reference_frame="first") for s in specs]
    stream = tg_data.MixedStream(datasets, [s["ratio"] for s in specs], seed=5)
    picks = np.bincount([stream.choose(n)[0] for n in range(2000)], minlength=4) / 2000
    assert np.allclose(picks, [3 / 7, 3 / 7, 1 / 7, 0], atol=0.04)
    a, b = stream[17], tg_data.MixedStream(datasets, [s["ratio"] for s in specs], seed=5)[17]
    assert a.source == b.source and a.text == b.text and all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))


def test_video_clips_sample_reference_then_consecutive_frames(toy):
    spec = {"type": "ref_youtube_vos", "root": str(toy / "world"), "split": "train"}
    ds = tg_data.build_dataset(spec, frames_per_clip=3, reference_frame="first")
    video, _ = ds.items[0]
    for seed in range(5):
        idx = ds._frame_indices(video, 1, np.random.default_rng(seed))
        assert idx[0] == 0 and idx[2] == min(idx[1] + 1, len(video) - 1) and idx[1] >= 1
    sample = ds.sample(0, np.random.default_rng(0))
    assert len(sample.frames) == 3 and sample.masks[0].shape == sample.frames[0].shape[:2]


def test_instruction_world_samples_name_their_target(toy):
    spec = {"type": "instrack", "root": str(toy / "world"), "split": "train"}
    ds = tg_data.build_dataset(spec, frames_per_clip=1, reference_frame="first")
    for index, (video, expression) in enumerate(ds.items):
        sample = ds.sample(index, np.random.default_rng(0))
        assert sample.target == f"{expression.extra['colour']} {expression.extra['category']}"
        assert sample.target.split()[-1] == video.extra["objects"][str(expression.obj_id)]["category"]


def test_named_answer_teaches_the_target_and_init_from_takes_brain_overrides(toy, tmp_path):
    ytvos = [{"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}]
    assert tg_train.main(_argv(tmp_path / "a", ytvos, "train.steps=2")) == 0
    named = "Sure, I track the {target}. <TK>, <PO>"
    argv = _argv(tmp_path / "b", ytvos, "train.steps=2", f"model.init_from={tmp_path / 'a' / 'model'}")
    assert tg_train.main([*argv, "--set", f"model.overrides={{brain: {{answer_template: '{named}'}}}}"]) == 0
    model = TrackGPT.from_pretrained(tmp_path / "b" / "model")
    assert model.config.brain.answer_template == named
    _, labels = model.brain.training_example("the red ball", target="red ball")
    answer = model.brain.tokenizer.decode([t for t in labels if t != -100])
    assert "track the red ball." in answer and "<TK>" in answer
    _, labels = model.brain.training_example("the red ball")
    assert "track the object." in model.brain.tokenizer.decode([t for t in labels if t != -100])
    # other overrides cannot change a loaded model
    bad = [*argv, "--overwrite", "--set", "model.overrides={sam: {img_size: 32}}"]
    assert tg_train.main(bad) == 2


def test_freeze_brain_trains_phi_and_perception_only(toy, tmp_path):
    ytvos = [{"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}]
    assert tg_train.main(_argv(tmp_path / "a", ytvos, "train.steps=2", frames=2)) == 0
    start = tmp_path / "a" / "model"
    frozen = ("model.freeze_brain=true", "model.lora=false", "model.train_token_rows=false",
              f"model.init_from={start}")  # fmt: skip
    argv = _argv(tmp_path / "b", ytvos, "train.steps=3", *frozen, frames=2)
    window = "model.overrides={brain: {state_window: 3, state_layer: 1}, projection_input_norm: true}"
    assert tg_train.main([*argv, "--set", window]) == 0
    before = load_file(str(start / "model.safetensors"))
    after = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    brain_keys = [k for k in before if k.startswith("brain.")]
    assert brain_keys and all(torch.equal(before[k], after[k]) for k in brain_keys)
    adapter = "brain_adapter/adapter_model.safetensors"
    a, b = load_file(str(start / adapter)), load_file(str(tmp_path / "b" / "model" / adapter))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k for k in after if k.startswith("projection.input_norm.")} == {
        f"projection.input_norm.{b}" for b in ("running_mean", "running_var", "num_batches_tracked")
    }
    assert int(after["projection.input_norm.num_batches_tracked"]) == 6  # 3 steps x (<TK>, <PO>)
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("perception.sam.mask_decoder."))
    model = TrackGPT.from_pretrained(tmp_path / "b" / "model")
    assert (model.config.brain.state_window, model.config.brain.state_layer) == (3, 1)
    assert model.config.projection_input_norm and model.projection.input_norm is not None
    states = torch.randn(1, model.brain.hidden_size)  # one state in training mode: the running statistics
    torch.testing.assert_close(model.projection.train()(states), model.projection.eval()(states))
    # the brain cannot be frozen and trained at once
    bad = _argv(tmp_path / "c", ytvos, "train.steps=1", "model.freeze_brain=true", f"model.init_from={start}")
    assert tg_train.main(bad) == 2


def test_propagation_stage_trains_the_propagation_only(toy, tmp_path):
    ytvos = [{"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}]
    window = "model.overrides={projection_input_norm: true}"
    assert tg_train.main([*_argv(tmp_path / "a", ytvos, "train.steps=2", frames=2), "--set", window]) == 0
    start = tmp_path / "a" / "model"
    frozen = ("model.freeze_brain=true", "model.lora=false", "model.train_token_rows=false",
              f"model.init_from={start}", "model.train_perception=[propagation]")  # fmt: skip
    assert tg_train.main(_argv(tmp_path / "b", ytvos, "train.steps=3", *frozen, frames=3)) == 0
    before = load_file(str(start / "model.safetensors"))
    after = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    moved = {k.split(".")[0] + "." + k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"perception.propagation"}  # phi's running statistics, decoder, purport head: as they were
    # a part that does not exist is named
    bad = _argv(tmp_path / "c", ytvos, "train.steps=1", *frozen[:-1], "model.train_perception=[decoder]")
    assert tg_train.main(bad) == 2


def test_text_only_stage_trains_the_vision_tower_projector_and_lora_only(toy, tmp_path):
    ytvos = [{"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}]
    projector = "model.overrides={brain: {train_vision_projector: true}}"
    assert tg_train.main(_argv(tmp_path / "a", ytvos, "train.steps=2", projector, frames=1)) == 0
    start = tmp_path / "a" / "model"
    text_only = ("loss.lambda_mask=0", "loss.lambda_po=0", "model.train_token_rows=false", f"model.init_from={start}",
                 "model.overrides={brain: {train_vision_tower: true}}")  # fmt: skip
    assert tg_train.main(_argv(tmp_path / "b", ytvos, "train.steps=3", *text_only, frames=1)) == 0
    rows = _rows(tmp_path / "b" / "train_log.csv")
    assert all(float(r["loss_mask"]) == 0 and float(r["loss_text"]) > 0 for r in rows)
    before = load_file(str(start / "model.safetensors"))
    after = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    unchanged = [k for k in before if k.startswith(("perception.", "projection.", "brain.added_tokens."))]
    assert unchanged and all(torch.equal(before[k], after[k]) for k in unchanged)
    projector = [k for k in before if k.startswith("brain.multi_modal_projector.")]
    assert projector and not all(torch.equal(before[k], after[k]) for k in projector)
    tower = [k for k in after if k.startswith("brain.vision_tower.")]
    seeded = TrackGPT.from_pretrained(start).brain.submodule("vision_tower").state_dict()
    assert tower and not all(torch.equal(seeded[k.removeprefix("brain.vision_tower.")], after[k]) for k in tower)
    adapter = "brain_adapter/adapter_model.safetensors"
    a, b = load_file(str(start / adapter)), load_file(str(tmp_path / "b" / "model" / adapter))
    assert not all(torch.equal(a[k], b[k]) for k in a)
    # nothing would train: a text-only stage with the brain frozen
    frozen = ("loss.lambda_mask=0", "loss.lambda_po=0", "model.freeze_brain=true", "model.lora=false",
              "model.train_token_rows=false", f"model.init_from={start}")  # fmt: skip
    assert tg_train.main(_argv(tmp_path / "c", ytvos, "train.steps=1", *frozen, frames=1)) == 2


def test_colour_noise_names_another_colour_of_the_dataset_and_keeps_the_category(toy):
    spec = {"type": "instrack", "root": str(toy / "world"), "split": "train"}
    clean = tg_data.build_dataset(spec, frames_per_clip=1, reference_frame="first")
    noisy = tg_data.build_dataset({**spec, "colour_noise": 1.0}, frames_per_clip=1, reference_frame="first")
    half = tg_data.build_dataset({**spec, "colour_noise": 0.5}, frames_per_clip=1, reference_frame="first")
    flips = 0
    for index, (_, expression) in enumerate(noisy.items):
        for k in range(8):
            colour, category = expression.extra["colour"], expression.extra["category"]
            a = clean.sample(index, np.random.default_rng(k)).target
            b = noisy.sample(index, np.random.default_rng(k)).target
            assert a == f"{colour} {category}"
            assert b.endswith(f" {category}") and b.split()[0] != colour and b.split()[0] in noisy.colours
            flips += half.sample(index, np.random.default_rng(k)).target != a
    total = 8 * len(noisy.items)
    assert 0.2 * total < flips < 0.8 * total
    with pytest.raises(SetupError, match="colour_noise must be in"):
        tg_data.build_dataset({**spec, "colour_noise": 1.5}, frames_per_clip=1, reference_frame="first")


def test_text_loss_reads_only_the_answer_positions_and_equals_the_full_vocabulary_loss(toy):
    """The output layer runs only where a label follows; the loss is the full-logit cross-entropy all the same."""
    from trackgpt.config import get_config
    from trackgpt.loading import load_model

    torch.manual_seed(0)
    model = load_model(get_config("tiny"))
    options = {**tg_train.DEFAULTS["model"], "train_token_rows": True}
    text_only = {**tg_train.DEFAULTS["loss"], "lambda_mask": 0.0, "lambda_po": 0.0}
    module = tg_train.TrackGPTTrainModule(model, loss=text_only, options=options).eval()  # no dropout
    spec = {"type": "instrack", "root": str(toy / "world"), "split": "train"}
    ds = tg_data.build_dataset(spec, frames_per_clip=1, reference_frame="first")
    samples = [ds.sample(i, np.random.default_rng(i)) for i in range(len(ds.items))]
    calls = []
    head = model.brain.model.get_output_embeddings()
    hook = head.register_forward_hook(lambda m, args, out: calls.append(tuple(args[0].shape)))
    loss = module(samples)["loss_text"]
    hook.remove()
    input_ids, labels, attention, pixels = module._text_batch(samples, model.brain.device)
    answered = int((labels[:, 1:] != -100).sum())
    assert calls == [(answered, model.brain.hidden_size)] and answered < labels.numel() // 2
    with torch.no_grad():
        full = model.brain.model(input_ids=input_ids, pixel_values=pixels, attention_mask=attention).logits
    reference = torch.nn.functional.cross_entropy(
        full[:, :-1].reshape(-1, full.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert torch.allclose(loss.detach(), reference, rtol=1e-5, atol=1e-6), (float(loss), float(reference))


def test_world_objects_asks_about_the_frames_visible_objects_from_the_worlds_labels(toy, tmp_path):
    spec = {"type": "world_objects", "root": str(toy / "world"), "split": "train", "min_pixels": 1}
    ds = tg_data.build_dataset(spec, frames_per_clip=1, reference_frame="first")
    assert len(ds) == 3
    questions = set()
    for index, (video, labels) in enumerate(ds.items):
        ids = video.load_mask(0)
        shown = {k: np.nonzero(ids == k) for k in labels if np.any(ids == k)}
        for seed in range(12):
            sample = ds.sample(index, np.random.default_rng(seed))
            assert sample.kind == "text" and np.array_equal(sample.frames[0], video.load_frame(0))
            (question, answer), *rest = sample.conversation
            questions.add(question)
            orders = (("left to right", 0), ("top to bottom", 1), ("largest", 2))
            axis = next(a for words, a in orders if words in question)
            place = {k: (xs.mean(), ys.mean(), -len(xs)) for k, (ys, xs) in shown.items()}
            order = [k for _, k in sorted((place[k][axis], k) for k in place)]
            assert answer == tg_data.list_names([" ".join(labels[k]) for k in order])
            categories = [labels[k][1] for k in shown]
            for q, a in rest:  # the colour of an object whose category is the only one of its kind in the frame
                category = q.removeprefix("What colour is the ").removesuffix("?")
                assert categories.count(category) == 1
                assert a == f"It is {next(c for c, g in (labels[k] for k in shown) if g == category)}."
    assert len(questions) == 3  # all three orders are asked
    assert tg_data.list_names(["red cup"]) == "red cup." and tg_data.list_names(["a", "b", "c"]) == "a, b and c."
    # a stage mixing it with the instructions trains (text loss only) and its conversation fits the brain's context
    mixed = [{"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}, {"name": "o", **spec}]
    text_only = ("loss.lambda_mask=0", "loss.lambda_po=0", "train.steps=2")
    assert tg_train.main(_argv(tmp_path / "a", mixed, *text_only, frames=1)) == 0
    assert all(float(r["loss_text"]) > 0 for r in _rows(tmp_path / "a" / "train_log.csv"))
    # a Ref-YouTube-VOS layout whose videos do not list their objects (a real dataset's) is refused by name
    plain = tmp_path / "plain"
    shutil.copytree(toy / "world", plain)
    meta = plain / "meta_expressions" / "train" / "meta_expressions.json"
    index = json.loads(meta.read_text())
    for entry in index["videos"].values():
        entry.pop("objects")
    meta.write_text(json.dumps(index))
    with pytest.raises(SetupError, match="lists its objects' colour and category"):
        tg_data.build_dataset({**spec, "root": str(plain)}, frames_per_clip=1, reference_frame="first")


def test_perception_from_takes_phi_and_the_perception_of_another_model_and_keeps_the_brain(toy, tmp_path):
    from safetensors.torch import save_file

    from trackgpt.loading import load_model

    world = [{"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}]
    for name, seed in (("a", 1), ("b", 2)):
        assert tg_train.main(_argv(tmp_path / name, world, "train.steps=1", f"seed={seed}", frames=2)) == 0
    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    assert tg_train.main(_argv(tmp_path / "c", world, "train.steps=1", f"model.init_from={a}",
                               f"model.perception_from={b}", "optim.lr=0", frames=2)) == 0  # fmt: skip
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    tc = load_file(str(tmp_path / "c" / "model" / "model.safetensors"))
    taken = [k for k in tc if k.startswith(("projection.", "perception."))]
    assert taken and all(torch.equal(tc[k], tb[k]) for k in taken)
    assert not all(torch.equal(ta[k], tb[k]) for k in taken)  # the two donors differ: the check can fail
    brain = [k for k in tc if k.startswith("brain.")]
    assert brain and all(torch.equal(tc[k], ta[k]) for k in brain)
    # a donor lacking a tensor is refused by name, never half loaded; a folder without weights fails at setup
    model = load_model(str(a))
    partial = tmp_path / "partial"
    partial.mkdir()
    save_file({k: v for k, v in tb.items() if not k.startswith("perception.purport_head.")},
              str(partial / "model.safetensors"))  # fmt: skip
    with pytest.raises(SetupError, match=r"missing \(e\.g\. perception\.purport_head"):
        tg_train.take_perception(model, partial)
    assert tg_train.main(_argv(tmp_path / "d", world, "train.steps=1", f"model.perception_from={tmp_path}")) == 2


def test_world_samples_carry_the_reference_frames_objects(toy):
    world = {"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}
    for spec in (world, {**world, "type": "world_objects"}):
        ds = tg_data.build_dataset(spec, frames_per_clip=2, reference_frame="first")
        video = ds.items[0][0]
        sample = ds.sample(0, np.random.default_rng(0))
        assert sample.objects is not None
        assert np.array_equal(sample.objects, video.load_mask(0))  # the reference frame's index mask, all objects
        assert len(np.setdiff1d(np.unique(sample.objects), [0, 255])) >= 2


def test_an_object_token_stage_trains_its_object_encoder_and_takes_its_proposer(toy, tmp_path):
    from trackgpt.config import SAM_SIZES
    from trackgpt.loading import load_model
    from trackgpt.sam import build_sam

    width = SAM_SIZES["tiny"].prompt_embed_dim
    brain = {"vision_source": "objects", "train_vision_projector": True, "train_vision_tower": True, "vision": {
        "hidden_size": width, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
        "image_size": 32, "patch_size": 16}}  # fmt: skip
    torch.manual_seed(5)
    donor = build_sam(SAM_SIZES["tiny"]).state_dict()
    torch.save(donor, tmp_path / "proposer.pth")
    world = [{"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"},
             {"name": "o", "type": "world_objects", "root": str(toy / "world"), "split": "train"}]  # fmt: skip
    argv = _argv(tmp_path / "run", world, "loss.lambda_mask=0", "loss.lambda_po=0", "train.steps=3",
                 "loss.lambda_objects=1", f"model.overrides={{'brain': {brain!r}}}",
                 f"model.object_proposer_from={tmp_path / 'proposer.pth'}", frames=1)  # fmt: skip
    assert tg_train.main(argv) == 0
    assert all(float(r["loss_objects"]) > 0 for r in _rows(tmp_path / "run" / "train_log.csv"))
    saved = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert not any("object_heads" in k for k in saved)  # the heads exist in training only
    proposer = {k.removeprefix("perception.object_proposer."): v for k, v in saved.items()
                if k.startswith("perception.object_proposer.")}  # fmt: skip
    taken = {k: v for k, v in donor.items() if k.startswith(("prompt_encoder.", "mask_decoder."))}
    assert proposer.keys() == taken.keys() and all(torch.equal(proposer[k], taken[k]) for k in taken)
    model = load_model(str(tmp_path / "run" / "model"))
    fresh = TrackGPT.from_config("tiny", brain=brain).brain.submodule("vision_tower")
    trained = model.brain.submodule("vision_tower")
    assert not all(torch.equal(a, b) for a, b in zip(trained.parameters(), fresh.parameters(), strict=True))
    # phi and the perception of a model whose brain reads no objects (model.perception_from): the proposer stays
    tower = TrackGPT.from_config("tiny")
    with torch.no_grad():
        for p in tower.perception.parameters():
            p.add_(0.01)
    tower.save_pretrained(tmp_path / "tower")
    proposer_before = {k: v.clone() for k, v in model.perception.object_proposer.state_dict().items()}
    tg_train.take_perception(model, tmp_path / "tower")
    for (name, a), b in zip(model.perception.sam.named_parameters(), tower.perception.sam.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert all(torch.equal(v, model.perception.object_proposer.state_dict()[k]) for k, v in proposer_before.items())
    # a model whose brain does not read objects, or a file that does not hold a SAM of its size, is refused by name
    with pytest.raises(SetupError, match="vision_source is not 'objects'"):
        tg_train.take_object_proposer(TrackGPT.from_config("tiny"), tmp_path / "proposer.pth")
    small = build_sam(SAM_SIZES["small"]).state_dict()
    torch.save(small, tmp_path / "other.pth")
    with pytest.raises(SetupError, match="object_proposer_from"):
        tg_train.take_object_proposer(model, tmp_path / "other.pth")


def test_the_object_loss_reads_each_slot_with_the_label_of_the_object_it_shows(toy):
    """The object tokens' own loss (loss.lambda_objects) pairs each slot with its object's label: heads that read a
    token made of its object's true colour and category (found from the slot's descriptor, the object whose centre
    lies there) score near zero; shuffled labels score high."""
    from trackgpt.config import SAM_SIZES

    width = SAM_SIZES["tiny"].prompt_embed_dim
    brain = {"vision_source": "objects", "train_vision_projector": True, "train_vision_tower": True, "vision": {
        "hidden_size": width, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
        "image_size": 48, "patch_size": 16}}  # fmt: skip
    spec = {"name": "w", "type": "instrack", "root": str(toy / "world"), "split": "train"}
    ds = tg_data.build_dataset(spec, frames_per_clip=1, reference_frame="first")
    colours, categories = tg_data.object_vocabulary([ds])
    assert len(colours) + len(categories) <= width
    model = TrackGPT.from_config("tiny", brain=brain)
    options = {**tg_train.DEFAULTS["model"], "lora": False, "train_token_rows": False}
    loss = {**tg_train.DEFAULTS["loss"], "lambda_objects": 1.0}
    module = tg_train.TrackGPTTrainModule(model, loss=loss, options=options, object_vocabulary=(colours, categories))
    samples = [ds.sample(i, np.random.default_rng(i)) for i in range(4)]
    tokens = torch.zeros(len(samples), 9, width)
    for b, s in enumerate(samples):
        pixels = model.brain.preprocess_image(s.frames[0], objects=s.objects)[0]
        for slot in range(9):
            if pixels[slot, -1] == 0:
                continue
            cx = float(pixels[slot, -6]) * s.objects.shape[1]  # the slot's centre: which object is it?
            centres = {i: np.nonzero(s.objects == i)[1].mean() for i in s.object_labels if (s.objects == i).sum() >= 30}
            obj = min(centres, key=lambda i: abs(centres[i] - cx))
            colour, category = s.object_labels[obj]
            tokens[b, slot, colours.index(colour)] = 1.0
            tokens[b, slot, len(colours) + categories.index(category)] = 1.0
    with torch.no_grad():
        for head, offset, n in ((module.object_heads[0], 0, len(colours)),
                                (module.object_heads[1], len(colours), len(categories))):  # fmt: skip
            head.weight.zero_()
            head.bias.zero_()
            head.weight[torch.arange(n), offset + torch.arange(n)] = 50.0
    assert float(module._object_loss(samples, tokens)) < 1e-3
    assert float(module._object_loss(samples, tokens.flip(1))) > 1.0  # slots read in the wrong order
    # a brain that does not see objects cannot take the loss
    with pytest.raises(SetupError, match="lambda_objects"):
        tg_train.TrackGPTTrainModule(TrackGPT.from_config("tiny"), loss=loss, options=options,
                                     object_vocabulary=(colours, categories))  # fmt: skip
