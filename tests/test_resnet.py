"""Lab 2 (resnet): network shapes, on-device augmentation, CIFAR-10 loading, a real search, report figures."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REAL_DATA, run_search
from trainables.data import CIFAR_ARCHIVE, CIFAR_FOLDER, DatasetUnavailable, load_images
from labspec.hparams import CLASSIFIER_METRICS, ResNetConfig
from trainables.resnet import (
    LeNet5, ResNet18, Trainer, build_network, random_crop_flip, report_figures, stage_outputs,
)
from trainables.seeds import SeedSequence, seed_everything

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The original cifar-10-batches-py/batches.meta (158 bytes): torchvision checks its md5 even
# when the batches' own check is skipped, so the tiny dataset carries the real one.
BATCHES_META = bytes.fromhex(
    "80027d71012855136e756d5f63617365735f7065725f626174636871024d1027550b6c6162656c5f6e616d657371"
    "035d7104285508616972706c616e657105550a6175746f6d6f62696c657106550462697264710755036361747108"
    "55046465657271095503646f67710a550466726f67710b5505686f727365710c550473686970710d550574727563"
    "6b710e6555076e756d5f766973710f4d000c752e"
)
TRAIN_PER_BATCH, N_TEST = 80, 112  # 5 x 80 train + 112 test = 512 images


def make_colour_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """32x32 RGB images whose class sets the colour and place of a 10x10 patch, plus noise."""
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 80, size=(n, 3, 32, 32)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, label % 3, 4 + row * 14 : 14 + row * 14, 1 + col * 6 : 11 + col * 6] = 255
    return images, labels


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory) -> Path:
    """A data root holding cifar-10-batches-py with 512 learnable images, in the original pickle layout."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = [(f"data_batch_{i}", TRAIN_PER_BATCH) for i in range(1, 6)] + [("test_batch", N_TEST)]
    for name, n in files:
        images, labels = make_colour_images(n, rng)
        batch = {"batch_label": name, "labels": labels.tolist(), "data": images.reshape(n, -1),
                 "filenames": [f"{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(BATCHES_META)
    return root


def has_real_cifar() -> bool:
    """$TUNE_LAB_DATA holds cifar-10-batches-py, or the shared archive it can be built from."""
    root = Path(REAL_DATA) if REAL_DATA else None
    return root is not None and ((root / CIFAR_FOLDER / "data_batch_1").is_file() or (root / CIFAR_ARCHIVE).is_file())


requires_real_cifar = pytest.mark.skipif(not has_real_cifar(), reason="real CIFAR-10 not found under $TUNE_LAB_DATA")


@pytest.fixture(autouse=True)
def _no_shared_cache(request, monkeypatch, tmp_path):
    """The loader also looks in the user's cache: only real-data tests may find a CIFAR-10 there."""
    if request.node.get_closest_marker("real_data") is None:
        monkeypatch.setenv("TUNE_LAB_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("stem, stage1_side", [("cifar", 32), ("imagenet", 8)])
def test_resnet18_shapes_for_both_stems(stem, stage1_side):
    model = ResNet18(3, 10, stem=stem).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    sides = [maps.shape[-1] for _, maps in stage_outputs(model, x[:1])]
    assert sides == [stage1_side, stage1_side // 2, stage1_side // 4, stage1_side // 8]
    assert [maps.shape[0] for _, maps in stage_outputs(model, x[:1])] == [64, 128, 256, 512]
    assert ResNet18(1, 10, stem=stem)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # 11.2M parameters, as torchvision's resnet18 with a 10-class head (the stems differ slightly).
    assert 11.1e6 < sum(p.numel() for p in model.parameters()) < 11.3e6


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_lenet_shapes_and_classic_geometry(shape):
    model = LeNet5(shape, 10).eval()
    x = torch.randn(4, *shape)
    assert model(x).shape == (4, 10)
    # Both input shapes reach the classifier as 16 maps of 5x5, as in LeNet-5.
    assert stage_outputs(model, x[:1])[-1][1].shape == (16, 5, 5)


def test_faithful_is_the_labs_resnet18_whatever_the_stem():
    faithful = build_network(ResNetConfig(faithful=True, stem="cifar"), (3, 32, 32), 10)
    assert isinstance(faithful.stem[0], torch.nn.Conv2d) and faithful.stem[0].kernel_size == (7, 7)
    assert isinstance(faithful.stem[-1], torch.nn.MaxPool2d)
    corrected = build_network(ResNetConfig(), (3, 32, 32), 10)
    assert corrected.stem[0].kernel_size == (3, 3) and corrected.stem[0].stride == (1, 1)


def test_augmentation_keeps_shapes_and_labels_and_changes_images():
    n = 64
    # Image k is the constant k + 1 everywhere except a bright left column: crops may pad
    # with zeros and flips move the column, but image k's pixels stay either 0, k + 1 or 255.
    images = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 32, 32).clone()
    images[:, :, :, 0] = 255.0
    out = random_crop_flip(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    for k in range(n):
        values = set(out[k].unique().tolist())
        assert values <= {0.0, float(k + 1), 255.0}, (k, values)
        assert out[k, :, 16, 16].eq(k + 1).all()  # a shift of <= 4 px never reaches the centre
    # The bright column lands on the left (not flipped) or the right (flipped), or is cropped away.
    bright = out[:, 0, 16, :].eq(255.0)
    on_left, on_right = bright[:, :5].any(1), bright[:, 27:].any(1)
    assert not (on_left & on_right).any() and not bright[:, 5:27].any()
    assert on_left.any() and on_right.any(), "some images flipped, some not"
    assert not torch.equal(out, images)
    # Deterministic given the generator's seed.
    assert torch.equal(out, random_crop_flip(images, torch.Generator().manual_seed(0)))


def test_cifar_loads_as_nchw_with_per_channel_statistics(tiny_cifar):
    data = load_images("cifar10", tiny_cifar)
    assert data.classes == CLASSES and data.shape == (3, 32, 32)
    assert len(data.y_train) + len(data.y_val) == 5 * TRAIN_PER_BATCH and len(data.y_test) == N_TEST
    assert data.x_train.dtype == np.uint8 and len(data.mean) == len(data.std) == 3
    pixels = data.x_train.astype(np.float64) / 255
    assert data.mean == pytest.approx(pixels.mean(axis=(0, 2, 3)))
    # The patch colour differs by class, so channel means differ: a real per-channel statistic.
    assert len({round(m, 3) for m in data.mean}) == 3


FAKE_MATERIALIZE = """
import shutil, sys
target, archive = sys.argv[1], sys.argv[sys.argv.index("--archive") + 1]
source = open(archive).read().strip()
if source == "broken":
    sys.exit("cannot read the archive")
shutil.copytree(source, target + "/cifar-10-batches-py")
"""


def test_archive_pair_is_materialized_once_into_the_cache(tiny_cifar, tmp_path, monkeypatch):
    """A data dir holding only archive + script (like the shared read-only one) builds the cache."""
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    shared.mkdir()
    (shared / "materialize_cifar10.py").write_text(FAKE_MATERIALIZE)
    (shared / CIFAR_ARCHIVE).write_text(str(tiny_cifar / CIFAR_FOLDER))
    shared.chmod(0o555)
    try:
        data = load_images("cifar10", shared)
        assert (cache / CIFAR_FOLDER / "data_batch_1").is_file()
        assert [p.name for p in cache.iterdir()] == [CIFAR_FOLDER]  # no half-built leftovers
        assert sorted(p.name for p in shared.iterdir()) == [CIFAR_ARCHIVE, "materialize_cifar10.py"]
        assert len(data.y_test) == N_TEST
        (shared / CIFAR_ARCHIVE).chmod(0o644)
        shared.chmod(0o755)
        (shared / CIFAR_ARCHIVE).write_text("broken")  # a second load must use the cache, not the script
        assert load_images("cifar10", shared).classes == CLASSES
        monkeypatch.setenv("TUNE_LAB_CACHE", str(tmp_path / "cache2"))
        with pytest.raises(DatasetUnavailable, match="cannot read the archive"):
            load_images("cifar10", shared)
    finally:
        shared.chmod(0o755)


def test_missing_cifar_says_which_file_and_where(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"cifar-10-batches-py/data_batch_1 is missing \(looked in"):
        load_images("cifar10", tmp_path / "empty")


def test_lenet_learns_mnist_shaped_data(tiny_mnist):
    data = load_images("mnist", tiny_mnist)
    trainer = Trainer(ResNetConfig(model="lenet", epochs=4, lr=0.003), data, torch.device("cpu"))
    for _ in range(4):
        train = trainer.train_epoch()
    assert train["samples"] == len(data.y_train)
    assert trainer.evaluate()["test_acc"] > 0.8


class GpuLayoutOnCpu(Trainer):
    """The resnet Trainer taking its GPU branch (`on_gpu`: channels_last model) on the CPU, where tests run."""

    on_gpu = property(lambda self: True, lambda self, value: None)


@pytest.mark.parametrize("trainer_cls, device", [
    (Trainer, "cpu"),
    (GpuLayoutOnCpu, "cpu"),
    pytest.param(Trainer, "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
])
def test_the_seeds_of_a_trial_share_one_device_copy_of_the_images(tiny_cifar, trainer_cls, device):
    """Issue 35: `--repeats N` trains N trainers in one process; they must share its one device
    copy of the images. On a GPU each used to make its own channels_last copy (~0.7 GB per seed
    on CIFAR-10), which batches never saw (`index_select` returns NCHW)."""
    data = load_images("cifar10", tiny_cifar, subset=64)
    group = trainer_cls.seed_group(ResNetConfig(stem="imagenet"), data, torch.device(device), [0, 1])
    assert isinstance(group, SeedSequence)
    first, second = group.trainers[0], group.trainers[1]
    for split in ("train", "val", "test"):
        (x0, y0), (x1, y1) = first.splits[split], second.splits[split]
        assert x0.data_ptr() == x1.data_ptr() and y0.data_ptr() == y1.data_ptr(), split
        assert x0.is_contiguous()  # NCHW, as index_select would hand out anyway
    if first.on_gpu:  # the model stays channels_last, and takes the NCHW batch as it is
        assert first.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            assert first.model.eval()(first.splits["val"][0][:2]).shape == (2, 10)


def test_a_resumed_trial_draws_the_crops_it_would_have_drawn(tiny_cifar):
    """Issue 35: the augmentation generator is checkpointed. Two epochs straight and one epoch,
    a checkpoint round trip (as run_trial loads it: CPU, weights only) and one more epoch on a
    fresh trainer agree exactly on the CPU; before, the resumed epoch replayed the first's crops."""
    data = load_images("cifar10", tiny_cifar, subset=96)
    cfg = ResNetConfig(stem="imagenet", augment=True, batch_size=32, epochs=2)
    cpu = torch.device("cpu")
    seed_everything(cfg.seed)  # the same initial weights, as run_trial builds them
    straight = Trainer(cfg, data, cpu)
    straight.train_epoch()
    straight_metrics = {**straight.train_epoch(), **straight.evaluate()}

    seed_everything(cfg.seed)
    first = Trainer(cfg, data, cpu)
    first.train_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, map_location="cpu", weights_only=True)
    resumed = Trainer(cfg, data, cpu)
    resumed.load_state_dict(saved)
    resumed_metrics = {**resumed.train_epoch(), **resumed.evaluate()}

    assert resumed_metrics == straight_metrics
    resumed_weights = resumed.model.state_dict()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed_weights[key]), key
    assert saved["rng"]["augment"].dtype == torch.uint8  # a CPU byte tensor: Generator.set_state's input


def test_a_checkpoint_without_the_augmentation_state_still_loads(tiny_cifar):
    """Checkpoints saved before issue 35 have no rng.augment: they load, and the crops restart from the seed."""
    data = load_images("cifar10", tiny_cifar, subset=32)
    cfg = ResNetConfig(model="lenet", augment=True, batch_size=16)
    trainer = Trainer(cfg, data, torch.device("cpu"))
    trainer.train_epoch()
    old = trainer.state_dict()
    del old["rng"]["augment"]
    fresh = Trainer(cfg, data, torch.device("cpu"))
    seeded = fresh.augment_generator.get_state()
    fresh.load_state_dict(old)
    assert torch.equal(fresh.augment_generator.get_state(), seeded)
    assert torch.equal(fresh.generator.get_state(), trainer.generator.get_state())


MODEL_SEARCH = """
description: LeNet vs ResNet18 on tiny CIFAR-format data, one epoch
lab: resnet
metric: val_acc
mode: max
fixed: {epochs: 1, batch_size: 32, lr: 0.003, stem: imagenet, augment: true}
params:
  model: {grid: [lenet, resnet18]}
search: grid
scheduler: fifo
"""


def test_model_search_on_tiny_cifar_reports_every_metric_and_draws_figures(ray_session, tiny_cifar, tmp_path):
    results = tmp_path / "results"
    summary = run_search("resnet", MODEL_SEARCH, tiny_cifar, results, "tiny", "--max-concurrent", "1",
                         "--keep-checkpoints", "all")  # each model's figures are drawn below
    assert summary["dataset"] == "cifar10"
    trials = {t["setting"]["model"]: t for t in summary["trials"]}
    assert set(trials) == {"lenet", "resnet18"}
    for trial in trials.values():
        assert trial["status"] == "completed" and trial["epochs_run"] == 1
        for metric in (*CLASSIFIER_METRICS, "epoch_time_s"):
            assert len(trial["history"][metric]) == 1 and trial["history"][metric][0] is not None, metric
        assert trial["best"]["samples_per_s"] > 0
        assert 0.0 <= trial["best"]["test_acc"] <= 1.0
    # the search's own report carries the lab's figures of its best trial
    report = results / "tiny" / "report"
    assert (report / "feature_maps_stage4.png").is_file() and (report / "confusion_matrix.png").is_file()
    assert "feature_maps_stage1.png" in (report / "report.md").read_text()

    data = load_images("cifar10", tiny_cifar)
    for model, trial in trials.items():
        out = tmp_path / f"figures-{model}"
        figures = report_figures(trial["checkpoint"], data, out)
        files = [name for _, name in figures]
        assert "feature_maps_stage1.png" in files and "confusion_matrix.png" in files
        assert len([f for f in files if f.startswith("feature_maps_stage")]) == 4
        for caption, name in figures:
            png = (out / name).read_bytes()
            assert png.startswith(b"\x89PNG") and len(png) > 2000, name
            assert caption


@pytest.mark.real_data
@requires_real_cifar
def test_real_cifar10_splits_statistics_and_a_lenet_epoch():
    data = load_images("cifar10", REAL_DATA, subset=4000)
    assert data.classes == CLASSES and data.shape == (3, 32, 32)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (4000, 5000, 10000)
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    # CIFAR-10's per-channel means are ~0.49 / 0.48 / 0.45 (the shared JPEG copy: 0.4913 / 0.4821 / 0.4465).
    assert data.mean == pytest.approx((0.491, 0.482, 0.447), abs=0.01)
    trainer = Trainer(ResNetConfig(model="lenet", epochs=1), data, torch.device("cpu"))
    trainer.train_epoch()
    assert trainer.evaluate()["test_acc"] > 0.2  # chance is 0.1
