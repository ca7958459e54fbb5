"""Lab 3 (seq2seq): normalisation and filtering, the hand-written GRU, masking, a tiny real search, translate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch

from tests.conftest import REAL_DATA, run_search
from labspec.errors import DatasetUnavailable
from labspec.hparams import Seq2SeqConfig
from trainables.seq2seq import Recurrent, ScratchGRUCell, Seq2Seq, Translator, corpus_bleu
from trainables.translation_data import (
    EOS, PAD, SOS, UNK, Vocab, detokenize, has_eng_prefix, load_pairs, normalize, pad_rows, read_pairs,
)
from tune_lab.cli import main

# Lines as the real file writes them (French with U+202F before ! and ?, curly and straight quotes).
REAL_LOOKING = [
    "Go.\tVa !",
    "I'm cold.\tJ'ai froid.",
    "He's a teacher.\tIl est enseignant.",
    "You're très fatigué?\tTu es très fatigué\u202f?",
    "They are at the café in Montréal, I think.\tIls sont au café à Montréal, je pense.",
    "She isn't here.\tElle n’est pas là.",
    "We are 100% sure!\tNous sommes sûrs à 100\u00a0%\u202f!",
]


def test_normalisation_lowercases_strips_accents_and_splits_punctuation():
    assert normalize("Va !") == ["va", "!"]
    assert normalize("J'ai froid.") == ["j", "ai", "froid", "."]
    assert normalize("Tu es très fatigué\u202f?") == ["tu", "es", "tres", "fatigue", "?"]
    assert normalize("Ils sont au café à Montréal, je pense.") == ["ils", "sont", "au", "cafe", "a", "montreal", "je", "pense", "."]
    assert normalize("Nous sommes sûrs à 100\u00a0%\u202f!") == ["nous", "sommes", "surs", "a", "!"]
    assert normalize("Elle n’est pas là...") == ["elle", "n", "est", "pas", "la", ".", ".", "."]
    assert detokenize(["i", "m", "cold", "."]) == "i m cold."


def test_english_prefix_filter_and_max_length(tmp_path):
    english = [normalize(line.split("\t")[0]) for line in REAL_LOOKING]
    # "he s", "you re", "they are", "she is(n t)" and "we are" pass; "go", "i m" needs "i m " (passes).
    assert [has_eng_prefix(e) for e in english] == [False, True, True, True, True, True, True]
    path = tmp_path / "eng-fra.txt"
    path.write_text("\n".join(REAL_LOOKING * 10) + "\n", encoding="utf-8")
    data = load_pairs("eng_fra", tmp_path)
    assert sum(data.split_sizes.values()) == 70
    everything = np.concatenate(list(data.splits.values()))
    assert sorted(everything.tolist()) == list(range(70))  # the split is a partition
    kept = {tuple(data.text("english", i)) for s in data.splits for i in data.select(s, 7, True)}
    # "elle n est pas la ." is 6 words (< 7), "they are at the cafe in montreal i think ." 10; "go ." has no prefix.
    assert kept == {("i", "m", "cold", "."), ("he", "s", "a", "teacher", "."), ("she", "isn", "t", "here", "."),
                    ("we", "are", "sure", "!"), ("you", "re", "tres", "fatigue", "?")}
    everyone = {tuple(data.text("english", i)) for s in data.splits for i in data.select(s, 64, False)}
    assert len(everyone) == len(REAL_LOOKING)


def test_subset_cuts_the_pairs_a_trial_trains_on_and_the_opening_line_says_them(tmp_path):
    """--subset N: N pairs after the trial's own filters (not N before them), and the driver's line
    gives the split of each filter setting the search runs, not the file's whole split."""
    from tune_lab.options import SearchOptions
    from tune_lab.plan import make
    from tune_lab.spaces import load_search

    path = tmp_path / "eng-fra.txt"
    path.write_text("\n".join(REAL_LOOKING * 10) + "\n", encoding="utf-8")
    whole, cut = load_pairs("eng_fra", tmp_path), load_pairs("eng_fra", tmp_path, subset=3)
    assert len(whole.select("train", 7, True)) > 3 and len(cut.select("train", 7, True)) == 3
    assert np.array_equal(cut.select("train", 7, True), whole.select("train", 7, True)[:3])  # the same pairs, first 3
    assert np.array_equal(cut.select("val", 7, True), whole.select("val", 7, True))  # val / test whole
    space = tmp_path / "lengths.yaml"
    space.write_text("lab: seq2seq\nmetric: val_bleu\nfixed: {eng_prefix_filter: true}\nparams: {max_length: {grid: [7, 64]}}\n")
    sizes = [f"{len(cut.select(s, n, True))} {s}" for n in (7, 64) for s in ("train", "val", "test")]
    planned = make(load_search(str(space), "seq2seq"), SearchOptions(), now={"CPU": 2.0})  # no Ray asked
    assert planned.split_line(cut) == (
        f"{' / '.join(sizes[:3])} at max_length 7, English prefixes only; "
        f"{' / '.join(sizes[3:])} at max_length 64, English prefixes only")


def test_missing_file_and_malformed_line_get_clear_errors(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"eng-fra.txt is missing \(looked for .*eng-fra.txt and .*translation/eng-fra.txt"):
        load_pairs("eng_fra", tmp_path)
    (tmp_path / "eng-fra.txt").write_text("Go.\tVa !\nRun! Cours !\n", encoding="utf-8")
    with pytest.raises(DatasetUnavailable, match=r"eng-fra.txt, line 2: expected 'english<TAB>french', found no TAB"):
        read_pairs(tmp_path / "eng-fra.txt")


def test_vocab_maps_unknown_words_and_pads():
    vocab = Vocab(["<sos>", "<eos>", "<pad>", "<unk>", "i", "am"])
    assert vocab.encode(["i", "am", "zzz"]) == [4, 5, UNK]
    assert vocab.decode([4, UNK, 5, EOS, 4]) == ["i", "<unk>", "am"]
    rows = pad_rows([np.array([7, 8]), np.array([9])], start=SOS, end=EOS)
    assert rows.tolist() == [[SOS, 7, 8, EOS], [SOS, 9, EOS, PAD]]


def test_scratch_gru_cell_matches_torch_gru_cell():
    torch.manual_seed(0)
    ours, theirs = ScratchGRUCell(5, 7), torch.nn.GRUCell(5, 7)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ours, name).copy_(getattr(theirs, name))
    x, h = torch.randn(4, 5), torch.randn(4, 7)
    torch.testing.assert_close(ours(x, h), theirs(x, h))
    # The lab's cell (raw h inside the gates) is a different function with fewer weights.
    faithful = ScratchGRUCell(5, 7, faithful=True)
    assert faithful.weight_hh.shape == (7, 7)
    assert not torch.allclose(faithful(x, h), theirs(x, h))


def test_padded_steps_leave_the_final_state_alone():
    """The state after a padded batch is each sentence's state after its own last word, for both kinds of layer."""
    torch.manual_seed(0)
    torch_gru, scratch = Recurrent("gru", 6), Recurrent("gru_scratch", 6)
    with torch.no_grad():
        for ours, theirs in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"),
                             ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):
            getattr(scratch.layer, ours).copy_(getattr(torch_gru.layer, theirs))
    x, lengths = torch.randn(3, 5, 6), torch.tensor([5, 2, 3])
    for layer in (torch_gru, scratch):
        _, state = layer(x, None, lengths)
        for i, n in enumerate(lengths.tolist()):
            _, alone = layer(x[i : i + 1, :n])
            torch.testing.assert_close(state[i], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "gru_scratch"])
@pytest.mark.parametrize("attention", [False, True])
def test_model_shapes_and_greedy_decoding(cell, attention):
    cfg = Seq2SeqConfig(cell=cell, attention=attention, hidden_size=8, teacher_forcing=0.5)
    model = Seq2Seq(11, 13, cfg)
    src = torch.tensor([[4, 5, 6, EOS], [7, EOS, PAD, PAD]])
    tgt_in = torch.tensor([[SOS, 4, 5], [SOS, 6, PAD]])
    assert model(src, torch.tensor([4, 2]), tgt_in).shape == (2, 3, 13)
    assert model(src, torch.tensor([4, 2]), tgt_in, 0.5, torch.Generator().manual_seed(0)).shape == (2, 3, 13)
    assert model.eval().greedy(src, torch.tensor([4, 2]), 6).shape[0] == 2


def test_bleu_is_sacrebleu_corpus_bleu():
    hyps, refs = ["i m cold.", "he is a good teacher."], ["i m cold.", "he s a teacher."]
    assert corpus_bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)


# --------------------------------------------------------------------------- a tiny real search
TINY_SEARCH = """
description: tiny cell search
lab: seq2seq
metric: val_bleu
mode: max
fixed: {epochs: 2, batch_size: 16, lr: 0.01, hidden_size: 32, attention: true, max_length: 10}
params:
  cell: {grid: [gru, gru_scratch]}
search: grid
scheduler: fifo
"""


def test_tiny_search_then_translate(ray_session, tiny_eng_fra, tmp_path, capsys):
    results = tmp_path / "results"
    summary = run_search("seq2seq", TINY_SEARCH, tiny_eng_fra, results, "tiny", "--max-concurrent", "1")
    assert {t["setting"]["cell"] for t in summary["trials"]} == {"gru", "gru_scratch"}
    for trial in summary["trials"]:
        assert trial["status"] == "completed" and trial["epochs_run"] == 2
        for metric in ("train_loss", "val_loss", "val_bleu", "test_bleu"):
            assert len(trial["history"][metric]) == 2, metric
        assert 0.0 <= trial["best"]["val_bleu"] <= 100.0
        assert trial["best"]["samples_per_s"] > 0
    report = (results / "tiny" / "report" / "report.md").read_text()
    assert "## Sample translations" in report and "\n> " in report and "\n= " in report and "\n< " in report
    assert (results / "tiny" / "report" / "loss_curves.png").is_file()
    assert "Sample translations" in (results / "tiny" / "report" / "report.html").read_text()

    # The checkpoint carries what translate needs, and loads with weights_only.
    checkpoint = Path(summary["best"]["checkpoint"]) / "checkpoint.pt"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["data"]["name"] == "eng_fra" and saved["config"]["max_length"] == 10
    assert "fatigue" in saved["state"]["vocab"]["src"] and "tired" in saved["state"]["vocab"]["tgt"]

    capsys.readouterr()
    assert main(["translate", "je suis fatigue .", "il est xyzzy .", "--storage", str(results)]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 2
    assert all(set(normalize(line)) <= set(saved["state"]["vocab"]["tgt"]) for line in lines)
    assert "never seen in training, read as <unk>: xyzzy" in out.err
    assert Translator(checkpoint.parent).unknown_words("Je suis XYZZY !") == ["xyzzy", "!"]  # no "!" in the tiny file

    # A rebuild without the data cannot translate samples: it keeps the richer report and says why, in one line.
    folder = results / "tiny" / "report"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["report", str(results / "tiny"), "--data-dir", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not rebuilt, it would lose 'Sample translations (test split" in err[0]
    assert "eng-fra.txt is missing" in err[0] and f"the report in {results / 'tiny'}/report is unchanged" in err[0]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in (results / "tiny").iterdir() if p.name.startswith(".report-")] == []  # no leftover
    assert main(["report", str(results / "tiny"), "--data-dir", str(tiny_eng_fra)]) == 0  # with the data it rebuilds
    assert "## Sample translations" in (folder / "report.md").read_text()


def test_translate_without_a_search_is_a_usage_error(tmp_path, capsys):
    assert main(["translate", "je suis la .", "--storage", str(tmp_path)]) == 2
    assert "no finished seq2seq search" in capsys.readouterr().err


@pytest.mark.real_data
@pytest.mark.skipif(not (REAL_DATA and (Path(REAL_DATA) / "translation" / "eng-fra.txt").is_file()),
                    reason="eng-fra.txt not found under $TUNE_LAB_DATA/translation")
def test_real_file_gives_the_tutorials_counts():
    """max_length 10 + English prefixes: the tutorial's 10,599 pairs, 4,345 French / 2,803 English words (+SOS/EOS)."""
    data = load_pairs("eng_fra", REAL_DATA)
    assert sum(data.split_sizes.values()) == 135_842
    kept = np.concatenate([data.select(s, 10, True) for s in ("train", "val", "test")])
    assert len(kept) == 10_599
    french = np.unique(np.concatenate([data.french.sentence(i) for i in kept]))
    english = np.unique(np.concatenate([data.english.sentence(i) for i in kept]))
    assert (len(french) + 2, len(english) + 2) == (4_345, 2_803)
    assert data.trial_split({"max_length": 10, "eng_prefix_filter": True}).startswith("8,524 train / 1,002 val / 1,073 test")
    smoke = load_pairs("eng_fra", REAL_DATA, subset=2000)  # 2,000 of the 8,524, not of all 108,674 training pairs
    assert [len(smoke.select(s, 10, True)) for s in ("train", "val", "test")] == [2000, 1002, 1073]
