"""Datasets, loaded once on the driver and handed to every trial through Ray's object store.

Images are kept as uint8 numpy arrays (N, C, H, W) until a trial moves them to its device:
that is ~47 MB for MNIST, cheap to share, and no trial ever re-reads or re-decodes a file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labspec.errors import DatasetUnavailable
from labspec.files import written_whole

DEFAULT_DATA_DIR = Path("~/.cache/tune-lab/data").expanduser()
# Where datasets built from a compact archive are written when the data dir is read-only.
CACHE_ENV = "TUNE_LAB_CACHE"
CIFAR_FOLDER = "cifar-10-batches-py"
# Where torchvision keeps each digit dataset's IDX files under a data dir: <data dir>/<folder>/raw.
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CIFAR_ARCHIVE, CIFAR_MATERIALIZE = "cifar10-jpg.tar.xz", "materialize_cifar10.py"
# Held-out validation images; searches select on these, never on the test set.
VAL_SIZE = 5000
SPLIT_SEED = 0


@dataclass
class ImageData:
    name: str  # the dataset actually used (after any fallback)
    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def trial_split(self, config: dict[str, Any]) -> str:
        return " / ".join(f"{n} {split}" for split, n in self.split_sizes.items())  # every trial uses it all

    def checkpoint_info(self) -> dict[str, Any]:
        return {"name": self.name, "classes": self.classes, "shape": list(self.shape), "mean": list(self.mean),
                "std": list(self.std)}


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $TUNE_LAB_DATA, else ~/.cache/tune-lab/data (always absolute)."""
    chosen = explicit or os.environ.get("TUNE_LAB_DATA") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def remedy(explicit: str | os.PathLike | None, what: str = "files") -> str:
    """What to do about missing files, in the terms the user typed: telling someone who passed
    --data-dir to "pass --data-dir" helps nobody."""
    if explicit:
        return f"put the {what} there, or give --data-dir a folder that has them"
    if os.environ.get("TUNE_LAB_DATA"):
        return f"put the {what} there, or point $TUNE_LAB_DATA (or --data-dir) at a folder that has them"
    return f"put the {what} there, or pass --data-dir with a folder that has them"


def download_into(root: Path, fetch, folder: str) -> None:
    """Run `fetch(tmp)` (a torchvision download) in a temporary folder and move `folder` from it
    into `root` only if it succeeded: a failed download leaves nothing behind in the data dir."""
    with tempfile.TemporaryDirectory(prefix="tune-lab-download-") as tmp:
        fetch(tmp)
        for source in sorted((Path(tmp) / folder).rglob("*")):
            target = root / folder / source.relative_to(Path(tmp) / folder)
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(source), target)


def _torchvision_class(name: str):
    from torchvision import datasets

    return {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]


def _raw_folder(name: str, root: Path) -> Path:
    """Where torchvision reads (and downloads) a digit dataset's IDX files under the data dir `root`."""
    return root / TORCHVISION_FOLDERS[name] / "raw"


def _missing_raw_files(name: str, cls, root: Path) -> list[Path]:
    raw = _raw_folder(name, root)
    names = [os.path.basename(url).removesuffix(".gz") for url, _ in cls.resources]
    return [raw / n for n in names if not (raw / n).is_file()]


def _load_torchvision(name: str, root: Path, allow_download: bool, explicit: str | os.PathLike | None = None):
    cls = _torchvision_class(name)
    missing = _missing_raw_files(name, cls, root)
    if missing and allow_download:
        def fetch(tmp: str) -> None:
            cls(tmp, train=True, download=True)
            cls(tmp, train=False, download=True)

        try:
            download_into(root, fetch, TORCHVISION_FOLDERS[name])
        except Exception as exc:  # offline, read-only directory, mirror down ...
            raise DatasetUnavailable(
                f"{name}: {missing[0]} is missing and downloading it failed ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]}); {remedy(explicit)}"
            ) from exc
    elif missing:
        raise DatasetUnavailable(f"{name}: {missing[0]} is missing (looked in {root}; downloads are off); {remedy(explicit)}")
    try:
        train, test = cls(str(root), train=True), cls(str(root), train=False)
        x_tr, y_tr = train.data.numpy(), train.targets.numpy()
        x_te, y_te = test.data.numpy(), test.targets.numpy()
    except Exception as exc:  # truncated or corrupt IDX files
        raise DatasetUnavailable(f"{name}: the files in {_raw_folder(name, root)} could not be read: {exc}") from exc
    return list(train.classes), x_tr[:, None], y_tr, x_te[:, None], y_te


def _raw_manifest(raw: Path) -> str:
    """Every file in a raw folder, with its size and modification time: a decoded copy stands while this is unchanged."""
    return json.dumps(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in raw.iterdir() if p.is_file()))


def _decoded_copy_path(name: str, root: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "decoded" / f"{name}-{digest}.npz"


def _save_whole(path: Path, **arrays: np.ndarray) -> None:
    """An .npz written whole or not at all (a search reading it meanwhile sees the old file or none); nothing
    when the cache is read-only or full: it only saves time."""
    with contextlib.suppress(OSError), written_whole(path) as partial, partial.open("wb") as out:
        np.savez(out, **arrays)  # to an open file: given a name, np.savez would add ".npz" to it


def _load_digit_images(name: str, root: Path, allow_download: bool, explicit: str | os.PathLike | None = None):
    """MNIST or Fashion-MNIST: torchvision reads the IDX files once per data dir, and its arrays are kept in the
    cache (~55 MB). Later searches read that copy instead: the driver then never imports torchvision, ~2 s of the
    one core a search's start-up keeps busy (docs/benchmarks.md, "A search's own cost"). A copy whose raw files
    have changed since, or that cannot be read, is made again; one that cannot be written is not kept."""
    raw = _raw_folder(name, root)
    copy = _decoded_copy_path(name, root)
    if copy.is_file() and raw.is_dir():
        try:
            with np.load(copy, allow_pickle=False) as saved:
                if str(saved["manifest"]) == _raw_manifest(raw):
                    return ([str(c) for c in saved["classes"]], saved["x_train"], saved["y_train"],
                            saved["x_test"], saved["y_test"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # cut short, or not ours: read the raw files again
            pass
    classes, x_tr, y_tr, x_te, y_te = _load_torchvision(name, root, allow_download, explicit)
    _save_whole(copy, manifest=np.asarray(_raw_manifest(raw)), classes=np.asarray(classes),
                x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return classes, x_tr, y_tr, x_te, y_te


def cache_dir() -> Path:
    """$TUNE_LAB_CACHE, else ~/.cache/tune-lab/data: a writable place for derived datasets."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_DATA_DIR).expanduser().resolve()


def _materialize_cifar10(root: Path, target: Path) -> None:
    """Build cifar-10-batches-py in `target` from the archive + script pair found in `root`.

    The script writes into a temporary folder beside the final one, which is then renamed:
    an interrupted run leaves no half-written batches for the next run to trust.
    """
    target.mkdir(parents=True, exist_ok=True)
    print(f"tune-lab: building CIFAR-10 from {root / CIFAR_ARCHIVE} into {target / CIFAR_FOLDER} "
          "(once, ~20 s; set $TUNE_LAB_CACHE to put it elsewhere)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".cifar10-") as work:
        done = subprocess.run(
            [sys.executable, str(root / CIFAR_MATERIALIZE), work, "--archive", str(root / CIFAR_ARCHIVE)],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise DatasetUnavailable(
                f"cifar10: {root / CIFAR_MATERIALIZE} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
            )
        try:
            os.replace(Path(work) / CIFAR_FOLDER, target / CIFAR_FOLDER)
        except OSError:  # another search built it meanwhile: keep theirs
            if not (target / CIFAR_FOLDER / "data_batch_1").is_file():
                raise


def _cifar10_root(root: Path, allow_download: bool, explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding cifar-10-batches-py: the data dir, the cache, or one built or downloaded now."""
    places = list(dict.fromkeys((root, cache_dir())))  # the same folder when no data dir was given
    for candidate in places:
        if (candidate / CIFAR_FOLDER / "data_batch_1").is_file():
            return candidate
    if (root / CIFAR_ARCHIVE).is_file() and (root / CIFAR_MATERIALIZE).is_file():
        _materialize_cifar10(root, cache_dir())
        return cache_dir()
    wanted = root / CIFAR_FOLDER / "data_batch_1"
    if not allow_download:
        raise DatasetUnavailable(
            f"cifar10: {wanted} is missing (looked in {' and '.join(map(str, places))}, and for {CIFAR_ARCHIVE} + "
            f"{CIFAR_MATERIALIZE} in {root}; downloads are off); {remedy(explicit)}"
        )
    from torchvision import datasets

    try:
        download_into(root, lambda tmp: datasets.CIFAR10(tmp, train=True, download=True), CIFAR_FOLDER)
    except Exception as exc:  # offline, read-only directory, mirror down ...
        raise DatasetUnavailable(
            f"cifar10: {wanted} is missing and downloading it failed ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0]}); {remedy(explicit)}"
        ) from exc
    return root


def _load_cifar10(root: Path, allow_download: bool, explicit: str | os.PathLike | None = None):
    """CIFAR-10 through torchvision's reader, without its md5 check (see LocalCIFAR10)."""
    from torchvision import datasets

    class LocalCIFAR10(datasets.CIFAR10):
        """The shared copy is a JPEG re-encoding, so the batch files cannot match torchvision's md5s."""

        def _check_integrity(self) -> bool:
            return True

    found = _cifar10_root(root, allow_download, explicit)
    try:
        train, test = LocalCIFAR10(str(found), train=True), LocalCIFAR10(str(found), train=False)
    except Exception as exc:  # truncated or corrupt pickles
        raise DatasetUnavailable(f"cifar10: the batches in {found / CIFAR_FOLDER} could not be read: {exc}") from exc
    # torchvision keeps (N, H, W, C); ImageData wants (N, C, H, W) like the digit datasets.
    return (
        list(train.classes),
        train.data.transpose(0, 3, 1, 2), np.asarray(train.targets),
        test.data.transpose(0, 3, 1, 2), np.asarray(test.targets),
    )


def _load_digits():
    """scikit-learn's bundled 8x8 digits: the offline stand-in for MNIST (1,797 images)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = len(labels) // 5
    test, train = order[:n_test], order[n_test:]
    return [str(d) for d in range(10)], images[train], labels[train], images[test], labels[test]


def load_images(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    subset: int | None = None,
    allow_download: bool | None = None,
) -> ImageData:
    """Load an image-classification dataset with a fixed train / validation / test split.

    Validation is 5,000 training images (10% when the training set is under 50,000), chosen
    with a fixed seed so every trial and every search sees the same split. `subset` keeps the
    first N of the remaining training images in that same shuffled order (smoke runs).
    Downloads are tried unless `allow_download` is False or $TUNE_LAB_OFFLINE is set.
    """
    if allow_download is None:
        allow_download = os.environ.get("TUNE_LAB_OFFLINE", "").lower() not in ("1", "true", "yes")
    if name == "digits":
        classes, x_tr, y_tr, x_te, y_te = _load_digits()
    elif name in ("mnist", "fashion_mnist"):
        classes, x_tr, y_tr, x_te, y_te = _load_digit_images(name, resolve_data_dir(data_dir), allow_download, data_dir)
    elif name == "cifar10":
        classes, x_tr, y_tr, x_te, y_te = _load_cifar10(resolve_data_dir(data_dir), allow_download, data_dir)
    else:
        raise ValueError(f"unknown dataset {name!r}; known: mnist, fashion_mnist, digits, cifar10")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y_tr))
    n_val = VAL_SIZE if len(y_tr) >= 10 * VAL_SIZE else max(1, len(y_tr) // 10)
    val, train = order[:n_val], order[n_val:]
    if subset is not None:
        train = train[:subset]
    x_train = np.ascontiguousarray(x_tr[train])
    mean, std = channel_stats(x_train)
    return ImageData(
        name=name,
        classes=classes,
        x_train=x_train,
        y_train=y_tr[train].astype(np.int64),
        x_val=np.ascontiguousarray(x_tr[val]),
        y_val=y_tr[val].astype(np.int64),
        x_test=np.ascontiguousarray(x_te),
        y_test=y_te.astype(np.int64),
        mean=mean,
        std=std,
    )


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each channel's mean and (population) std of uint8 images (N, C, H, W) scaled to [0, 1].

    From each channel's 256-bin histogram: exact integer counts, and no float copy of the images
    (0.3 GB for MNIST's training split, 1.1 GB for CIFAR-10's, ~0.25 s of a search's start-up).
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = np.bincount(images[:, channel].ravel(), minlength=256).astype(np.float64)
        mean = counts @ levels / counts.sum()
        means.append(float(mean))
        stds.append(float(np.sqrt(counts @ (levels - mean) ** 2 / counts.sum())))
    return tuple(means), tuple(stds)
