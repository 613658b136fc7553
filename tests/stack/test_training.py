"""End-to-end smoke run of the training pipeline, the export parity check and the model contract."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from stack.twin import read_config
from tests.conftest import ROOT
from training import data, evaluate, export, headroom, train
from training.loop import Recipe, augmentations, fit, pick_device, translate
from training.nets import cnn, flip_averaged, normalise

COMMITTED = sorted(p.parent.name for p in (ROOT / "model_repository").glob("*/config.pbtxt"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Train baseline_cnn for one epoch on a few hundred images, export and evaluate it."""
    tmp = tmp_path_factory.mktemp("smoke")
    ds = data.load(limit=400, cache_dir=tmp / "cache", with_test=True)
    summary = train.train_one("baseline_cnn", ds, pick_device("cpu"), tmp / "runs", tmp / "results", {"epochs": 1})
    err = export.export("baseline_cnn", tmp / "runs", tmp / "repo")
    table = evaluate.evaluate(tmp / "repo", tmp / "results", ds.test, ds.dropped, ds.val)
    return tmp, ds, summary, err, table


def test_smoke_run_trains_exports_and_predicts(smoke):
    tmp, ds, summary, err, table = smoke
    assert len(summary["history"]) == 1 and summary["temperature"] > 0
    assert (tmp / "runs" / "baseline_cnn" / "checkpoint.pt").is_file()
    model = torch.jit.load(str(tmp / "repo" / "baseline_cnn" / "1" / "model.pt"))
    probs = model(torch.from_numpy(ds.test.x[:16]))
    assert probs.shape == (16, 2) and probs.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(16), atol=1e-5)
    row = table["models"]["baseline_cnn"]
    assert row["confusion"]["tn"] + row["confusion"]["fp"] + row["confusion"]["fn"] + row["confusion"]["tp"] == len(ds.test)
    assert json.loads((tmp / "results" / "benchmark.json").read_text())["models"]["baseline_cnn"]["f1"] == row["f1"]
    assert (tmp / "results" / "roc_curves.png").stat().st_size > 10_000


def test_export_parity_within_tolerance(smoke):
    assert smoke[3] <= export.PARITY_TOLERANCE


def test_final_weights_load_without_the_training_code(smoke):
    """final.pt holds tensors and numbers, not pickled modules tied to the code's layout."""
    final = torch.load(smoke[0] / "runs" / "baseline_cnn" / "final.pt", weights_only=True)
    assert set(final) == {"state_dict", "temperature", "flip_tta"}
    assert all(isinstance(v, torch.Tensor) for v in final["state_dict"].values())


def test_resume_continues_from_checkpoint(smoke, capsys):
    tmp, ds, *_ = smoke
    # Same recipe as the checkpoint: training resumes after its last epoch, which here is the end.
    again = train.train_one("baseline_cnn", ds, pick_device("cpu"), tmp / "runs", tmp / "results", {"epochs": 1})
    assert "resuming from" in capsys.readouterr().out
    assert len(again["history"]) == 1
    # The resumed run trained nothing itself, yet reports the first run's cost, kept in the checkpoint.
    saved = torch.load(tmp / "runs" / "baseline_cnn" / "checkpoint.pt", weights_only=False)["state"]
    assert saved["wall_seconds"] >= saved["train_seconds"] > 0
    assert again["train_seconds"] == round(saved["train_seconds"], 1)
    assert again["wall_seconds"] >= round(saved["wall_seconds"], 1)


def test_flip_averaging_in_one_batch_equals_two_passes():
    torch.manual_seed(0)
    net = cnn()
    for _ in range(3):  # train-mode passes give BN non-trivial statistics, so a batch-dependent bug would show
        net(torch.randn(64, 3, 32, 32))
    net.eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        two_passes = (net(x) + net(x.flip(3))) / 2
        mirror_effect = (two_passes - net(x)).abs().max()
        assert mirror_effect > 1e-5  # else the comparison below could not tell the views apart
        assert (flip_averaged(net, x) - two_passes).abs().max() < mirror_effect / 100


def test_translate_moves_each_image_by_its_own_offset_and_reflects_the_border():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = translate(x, torch.tensor([[2, 0], [0, -3]]))
    assert out.shape == x.shape
    assert torch.equal(out[0, :, 2:], x[0, :, :-2])  # down by 2
    assert torch.equal(out[0, :, :2], x[0, :, [2, 1]])  # the rows above mirror the top (reflect)
    assert torch.equal(out[1, :, :, :-3], x[1, :, :, 3:])  # left by 3
    assert torch.equal(translate(x, torch.zeros(2, 2, dtype=torch.long)), x)


def test_augmentations_without_shift_draw_exactly_what_flips_alone_drew():
    """shift=0 must leave the flip stream untouched, or committed recipes would no longer replay."""
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    drawn = augmentations(Recipe(flip=True, shift=0), 16, a)
    assert set(drawn) == {"flip"} and np.array_equal(drawn["flip"], b.random(16) < 0.5)
    offsets = augmentations(Recipe(flip=False, shift=4), 1000, a)["offsets"]
    assert offsets.shape == (1000, 2) and offsets.min() == -4 and offsets.max() == 4


def test_recipe_overrides_are_typed_and_checked():
    assert train.parse_overrides(["lr=2e-3", "shift=4", "flip=false", "optimizer=adamw"]) == {
        "lr": 0.002, "shift": 4, "flip": False, "optimizer": "adamw"}
    for bad in (["lr"], ["speed=3"], ["epochs=ten"], ["flip=maybe"]):
        with pytest.raises(SystemExit):
            train.parse_overrides(bad)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_model_honours_its_config(name):
    """Names, dtypes and dims in config.pbtxt match what the TorchScript file really does."""
    cfg = read_config(ROOT / "model_repository" / name / "config.pbtxt")
    assert cfg.platform == "pytorch_libtorch" and cfg.max_batch_size >= 64
    assert cfg.HasField("dynamic_batching") and cfg.model_warmup
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    (inp,), (out,) = cfg.input, cfg.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("INPUT__0", mc.TYPE_UINT8, [32, 32, 3])
    assert (out.name, out.data_type, list(out.dims)) == ("OUTPUT__0", mc.TYPE_FP32, [2])
    cpu = text_format.Parse((ROOT / "model_repository" / name / "configs" / "cpu.pbtxt").read_text(), mc.ModelConfig())
    assert cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU and list(cpu.input) == list(cfg.input)
    model = torch.jit.load(str(ROOT / "model_repository" / name / "1" / "model.pt"))
    x = np.random.default_rng(0).integers(0, 256, (cfg.max_batch_size, 32, 32, 3), dtype=np.uint8)
    probs = model(torch.from_numpy(x))
    assert probs.dtype == torch.float32 and tuple(probs.shape) == (cfg.max_batch_size, 2)
    assert torch.allclose(probs.sum(1), torch.ones(len(x)), atol=1e-5)


def test_benchmark_table_agrees_with_an_independent_evaluation():
    """Re-score the committed TorchScript files on all 20,000 test images, decoded here with Pillow
    straight from the archive (no cache, no training code), and compare with benchmark.json."""
    import io
    import zipfile

    from PIL import Image

    table = json.loads((ROOT / "training" / "results" / "benchmark.json").read_text())["models"]
    with zipfile.ZipFile(data.data_dir() / "cifake-test.zip") as z:
        names = z.namelist()
        x = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names])
    y = np.array([n.startswith("FAKE/") for n in names])
    assert len(y) == 20_000
    torch.set_num_threads(2)
    probs = {}
    for name in COMMITTED:
        model = torch.jit.load(str(ROOT / "model_repository" / name / "1" / "model.pt"))
        with torch.inference_mode():
            probs[name] = np.concatenate([model(torch.from_numpy(x[i:i + 1000]))[:, 1].numpy()
                                          for i in range(0, len(x), 1000)])
    weights = table["ensemble"]["weights"]
    probs["ensemble"] = sum(weights[n] * probs[n] for n in COMMITTED)
    for name, p in probs.items():
        pred = p >= 0.5
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        f1 = 2 * tp / (2 * tp + fp + fn)
        print(f"{name}: independent F1 {f1:.4f}, table {table[name]['f1']:.4f}")
        assert abs(f1 - table[name]["f1"]) <= 0.002
        assert abs((pred == y).mean() - table[name]["accuracy"]) <= 0.002


def test_smoke_repository_gets_a_verdict_rule(smoke):
    """A one-model repository is servable too: evaluate writes its rule (weight 1)."""
    from training import rule

    tmp, *_ = smoke
    assert rule.load(tmp / "repo").weights == {"baseline_cnn": 1.0}


def test_a_quick_evaluation_cannot_overwrite_the_committed_results():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "training.evaluate", "--limit", "8"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--limit needs --results" in r.stderr


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_configs_are_what_export_writes(name, tmp_path):
    """config.pbtxt and configs/cpu.pbtxt are the exporter's, plus the verdict rule; the CPU twin serves cpu.pbtxt."""
    from stack.twin import derive

    for kind, path in ((mc.ModelInstanceGroup.KIND_GPU, "config.pbtxt"), (mc.ModelInstanceGroup.KIND_CPU, "configs/cpu.pbtxt")):
        committed = read_config(ROOT / "model_repository" / name / path)
        for key in ("ensemble_weight", "verdict_rule"):
            del committed.parameters[key]
        assert committed == export.model_config(name, kind), path
    derive(ROOT / "model_repository", tmp_path)
    served = read_config(tmp_path / name / "config.pbtxt")
    cpu = read_config(ROOT / "model_repository" / name / "configs" / "cpu.pbtxt")
    assert served.backend == "python" and list(served.instance_group) == list(cpu.instance_group)
    assert served.parameters["verdict_rule"] == cpu.parameters["verdict_rule"]


def test_headroom_counts_what_no_weighting_can_fix():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    p = np.array([[.9, .9, .2, .1, .1, .1, .8, .4],   # wrong on images 2, 3 and 6
                  [.9, .2, .9, .1, .1, .9, .1, .4],   # wrong on 1, 3 and 5
                  [.2, .9, .9, .1, .9, .1, .1, .4]])  # wrong on 0, 3 and 4
    f1, weights = headroom.best_weighting(p, y)
    assert f1 == pytest.approx(6 / 7)  # image 3 is wrong by all three: at best TP 3, FN 1, FP 0
    assert sum(weights) == pytest.approx(1)
    assert headroom.allowed_errors(np.r_[np.ones(5000), np.zeros(5000)], 0.990) == 100


def test_translation_tta_averages_the_served_net_over_translated_views(smoke):
    tmp, ds = smoke[:2]
    model = torch.jit.load(str(tmp / "repo" / "baseline_cnn" / "1" / "model.pt"))
    views = headroom.translated_logits(model.net, ds.val.x, "smoke")
    assert views.shape == (len(headroom.SHIFTS), len(ds.val), 2)
    with torch.inference_mode():
        served = flip_averaged(model.net, normalise(torch.from_numpy(ds.val.x))).numpy()
    assert np.allclose(views[0], served, atol=1e-5)  # no translation: the views the model is served with
    assert all(not np.array_equal(v, views[0]) for v in views[1:])  # every translation moved the logits
    report, p = headroom.translation_tta(model, ds.val, "smoke")
    assert [r["passes_per_image"] for r in report.values()] == [2, 2 * len(headroom.SHIFTS)]
    assert p.shape == (len(ds.val),) and ((p >= 0) & (p <= 1)).all()


def test_ema_leaves_the_average_of_the_weights_in_the_net(smoke):
    """A decay near 1 keeps the average at the weights after the first step, so the net ends close to where it
    started; without it the net ends wherever the optimiser took it."""
    _, ds, *_ = smoke

    def moved(ema: float) -> float:
        torch.manual_seed(0)
        net = cnn((8, 16), 1)
        start = {k: p.detach().clone() for k, p in net.named_parameters()}
        fit(net, ds.train, ds.val, Recipe(epochs=3, batch_size=64, lr=0.1, ema=ema), pick_device("cpu"))
        return max(float((p.detach() - start[k]).abs().max()) for k, p in net.named_parameters())

    plain, averaged = moved(0.0), moved(1 - 1e-9)
    assert averaged < plain / 5, (averaged, plain)
