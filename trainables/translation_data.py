"""The eng-fra sentence pairs of lab 3: reading, normalising, splitting, vocabularies, tensors.

The file (the PyTorch seq2seq tutorial's eng-fra.txt) holds one "english<TAB>french" pair a
line. It is read and normalised once on the driver into `SentencePairs`: every sentence as
word ids into one string table, and a fixed train / val / test split of *all* pairs. The
filters that are hyperparameters (max_length, the English-prefix filter) are applied by each
trial on top of that split, so a max_length=10 test sentence is also a test sentence at 64.
Each trial then builds its vocabularies from its own filtered training pairs only; any other
word becomes <unk>.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from labspec.errors import DatasetUnavailable

DATASET = "eng_fra"
FILE_NAME = "eng-fra.txt"
DATA_URL = "https://download.pytorch.org/tutorial/data.zip"  # holds data/eng-fra.txt
# SOS=0 and EOS=1 as in the lab; then padding and the unknown word.
SOS, EOS, PAD, UNK = 0, 1, 2, 3
SPECIALS = ("<sos>", "<eos>", "<pad>", "<unk>")
# The tutorial's English prefixes, checked on the normalised English side ("i'm" -> "i m").
ENG_PREFIXES = ("i am ", "i m ", "he is", "he s ", "she is", "she s ", "you are", "you re ",
                "we are", "we re ", "they are", "they re ")
NORMALISATION = "lowercase, NFD accents stripped, tokens = [a-z]+ runs and each of . ! ?; all else is a separator"
SPLIT_SEED = 0
VAL_FRACTION = TEST_FRACTION = 0.1
_TOKEN = re.compile(r"[a-z]+|[.!?]")


def normalize(text: str) -> list[str]:
    """Lower case, accents stripped, punctuation split off, other symbols dropped: the word list.

    "J'ai froid !" -> ['j', 'ai', 'froid', '!'] (the tutorial's normalisation, keeping '.').
    """
    decomposed = unicodedata.normalize("NFD", text.lower())
    plain = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return _TOKEN.findall(plain)


def has_eng_prefix(words: Sequence[str]) -> bool:
    return (" ".join(words) + " ").startswith(ENG_PREFIXES)


def detokenize(words: Iterable[str]) -> str:
    """Words back to a sentence: spaces between words, none before . ! ? ("i m cold." )."""
    return re.sub(r" ([.!?])", r"\1", " ".join(words))


def read_pairs(path: Path) -> list[tuple[list[str], list[str]]]:
    """(english words, french words) per line; a line without a TAB is an error naming file and line."""
    pairs = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            english, tab, french = line.partition("\t")
            if not tab:
                raise DatasetUnavailable(f"{path}, line {number}: expected 'english<TAB>french', found no TAB: {line[:60]!r}")
            pairs.append((normalize(english), normalize(french.split("\t")[0])))
    if not pairs:
        raise DatasetUnavailable(f"{path}: no sentence pairs in the file")
    return pairs


def find_file(root: Path, allow_download: bool, explicit: str | os.PathLike | None = None) -> Path:
    """ROOT/eng-fra.txt (or ROOT/translation/eng-fra.txt); downloaded into ROOT when allowed.

    `explicit` is the --data-dir given, if any, for the advice of the error; a failed download
    creates nothing in ROOT.
    """
    from trainables.data import remedy

    candidates = [root / FILE_NAME, root / "translation" / FILE_NAME]
    for path in candidates:
        if path.is_file():
            return path
    looked = " and ".join(str(p) for p in candidates)
    if not allow_download:
        raise DatasetUnavailable(f"{DATASET}: {FILE_NAME} is missing (looked for {looked}; downloads are off); "
                                 f"{remedy(explicit, 'file')}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "data.zip"
            urllib.request.urlretrieve(DATA_URL, archive)
            with zipfile.ZipFile(archive) as zipped, zipped.open(f"data/{FILE_NAME}") as src, \
                    open(Path(tmp) / FILE_NAME, "wb") as dst:
                shutil.copyfileobj(src, dst)
            root.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / FILE_NAME), candidates[0])
    except Exception as exc:
        raise DatasetUnavailable(f"{DATASET}: {FILE_NAME} is missing (looked for {looked}) and the download from "
                                 f"{DATA_URL} failed ({type(exc).__name__}: {exc}); {remedy(explicit, 'file')}") from exc
    return candidates[0]


@dataclass
class Side:
    """One language's sentences as word ids: sentence i is ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, len = sentences + 1

    @classmethod
    def build(cls, sentences: list[list[str]], table: dict[str, int]) -> "Side":
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
        offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((table.setdefault(w, len(table)) for s in sentences for w in s), dtype=np.int32,
                          count=int(offsets[-1]))
        return cls(ids, offsets)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sentence(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


@dataclass
class SentencePairs:
    """All pairs of the file, French (source) and English (target), and the fixed split."""

    name: str
    words: list[str]  # string table: word id -> word, for both languages
    french: Side
    english: Side
    eng_prefix: np.ndarray  # bool per pair: the English side starts with one of ENG_PREFIXES
    splits: dict[str, np.ndarray] = field(default_factory=dict)  # split -> pair indices
    # --subset: training pairs a trial keeps *after* its own filters (a cut before them left 164
    # of 2,000 pairs at max_length 10).
    train_limit: int | None = None

    @property
    def split_sizes(self) -> dict[str, int]:
        return {split: len(idx) for split, idx in self.splits.items()}

    def select(self, split: str, max_length: int, prefix_filter: bool) -> np.ndarray:
        """Pair indices of `split` whose both sides are shorter than max_length words (and, if asked,
        prefixed); for training, the first `train_limit` of them."""
        idx = self.splits[split]
        keep = (self.french.lengths[idx] < max_length) & (self.english.lengths[idx] < max_length)
        if prefix_filter:
            keep &= self.eng_prefix[idx]
        return idx[keep][: self.train_limit] if split == "train" else idx[keep]

    def trial_split(self, config: dict[str, Any]) -> str:
        """The pairs a trial of `config` trains, validates and tests on, for the driver's opening line
        (the file's whole split would say nothing about them)."""
        max_length, prefix = config["max_length"], config["eng_prefix_filter"]
        sizes = " / ".join(f"{len(self.select(s, max_length, prefix)):,} {s}" for s in self.splits)
        return f"{sizes} at max_length {max_length}" + (", English prefixes only" if prefix else "")

    def text(self, side: str, i: int) -> list[str]:
        return [self.words[w] for w in getattr(self, side).sentence(i)]

    def checkpoint_info(self) -> dict[str, Any]:
        """What a checkpoint needs to translate on its own (plain values: loads with weights_only)."""
        return {"name": self.name, "source": "french", "target": "english", "normalisation": NORMALISATION,
                "eng_prefixes": list(ENG_PREFIXES), "split_seed": SPLIT_SEED}


def load_pairs(
    name: str = DATASET, data_dir: str | os.PathLike | None = None, *, subset: int | None = None,
    allow_download: bool | None = None,
) -> SentencePairs:
    """Read and normalise eng-fra.txt and split all its pairs 80 / 10 / 10 with a fixed seed.

    `subset` keeps the first N training pairs of the shuffled split that pass a trial's filters
    (smoke runs); validation and test are whole.
    """
    from trainables.data import resolve_data_dir

    if name != DATASET:
        raise ValueError(f"unknown dataset {name!r}; known: {DATASET}")
    if allow_download is None:
        allow_download = os.environ.get("TUNE_LAB_OFFLINE", "").lower() not in ("1", "true", "yes")
    path = find_file(resolve_data_dir(data_dir), allow_download, data_dir)
    pairs = read_pairs(path)
    table: dict[str, int] = {}
    french = Side.build([fr for _, fr in pairs], table)
    english = Side.build([en for en, _ in pairs], table)
    prefix = np.fromiter((has_eng_prefix(en) for en, _ in pairs), dtype=bool, count=len(pairs))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(pairs))
    n_val = max(1, int(VAL_FRACTION * len(pairs)))
    n_test = max(1, int(TEST_FRACTION * len(pairs)))
    splits = {"train": order[n_val + n_test :], "val": order[:n_val], "test": order[n_val : n_val + n_test]}
    return SentencePairs(name, list(table), french, english, prefix, splits, train_limit=subset)


# --------------------------------------------------------------------------- vocabularies and tensors
@dataclass
class Vocab:
    """A trial's words: the specials, then the words of its training sentences, most frequent first."""

    words: list[str]

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_ids(cls, ids: np.ndarray, table: list[str]) -> "Vocab":
        counts = np.bincount(ids, minlength=len(table))
        used = np.flatnonzero(counts)
        used = used[np.argsort(-counts[used], kind="stable")]
        return cls(list(SPECIALS) + [table[i] for i in used])

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.index.get(w, UNK) for w in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids up to the first EOS, as words (specials other than <unk> dropped)."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= UNK:
                out.append(self.words[i])
        return out

    def table_map(self, table: list[str]) -> np.ndarray:
        """String-table id -> this vocabulary's id (UNK where unknown), as one lookup array."""
        return np.array([self.index.get(w, UNK) for w in table], dtype=np.int64)


def pad_rows(rows: list[np.ndarray], *, start: int | None = None, end: int | None = None) -> np.ndarray:
    """Sentences as one (N, L) int64 matrix padded with PAD, optionally with SOS first / EOS last."""
    extra = (start is not None) + (end is not None)
    out = np.full((len(rows), max((len(r) for r in rows), default=0) + extra), PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        j = 0
        if start is not None:
            out[i, 0], j = start, 1
        out[i, j : j + len(row)] = row
        if end is not None:
            out[i, j + len(row)] = end
    return out
