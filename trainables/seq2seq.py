"""Lab 3: French -> English translation with an encoder / decoder (hyperparameters: Seq2SeqConfig).

Read top to bottom: the hand-written GRU cell, one recurrent layer over any of the four cells,
the encoder / decoder with optional attention, the trainer (teacher forcing over padded
batches, masked NLL, batched greedy decoding scored by sacrebleu), then what the report and
`tune-lab translate` use.

The lab trained one random pair at a time ("55000 iterations", SGD lr 0.01, hidden 512): a
few epochs' worth of single pairs. Here every step is a batch of pairs of similar length, so
an epoch (~8,500 pairs at max_length 10) is ~133 Adam steps; 55,000 random pairs are ~6.5
epochs of that data.

The lab's hand-written GRU adds the raw hidden state inside its gates (r = sigmoid(W_r x + h))
instead of a learned U_r h; `faithful: true` keeps that, the default is a proper GRU cell.
"""
from __future__ import annotations

import math
import pathlib
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labspec.hparams import Seq2SeqConfig
from trainables.loop import Trainer as LoopTrainer
from trainables.loop import make_optimizer, make_schedule
from trainables.translation_data import (
    EOS, PAD, SOS, SentencePairs, Vocab, detokenize, normalize, pad_rows,
)
from trainables.translation_data import load_pairs as load_data  # noqa: F401  (the lab's data, for the driver)

EVAL_BATCH = 512
BUCKET_BATCHES = 50  # batches drawn together and sorted by length, so a batch holds similar lengths


# --------------------------------------------------------------------------- the hand-written GRU
class ScratchGRUCell(nn.Module):
    """A GRU cell written out (Cho et al., 2014), weights laid out as torch.nn.GRUCell's.

    r = sigmoid(W_r x + b_ir + U_r h + b_hr), z = sigmoid(W_z x + b_iz + U_z h + b_hz),
    n = tanh(W_n x + b_in + r * (U_n h + b_hn)), h' = (1 - z) * n + z * h.
    Cho et al. apply the reset gate before U_n (U_n (r * h)); torch and cuDNN apply it after, as
    here, which is what lets a test check this cell against torch.nn.GRUCell weight for weight.
    faithful=True is the lab's cell: the gates add the raw h instead of U_r h and U_z h.
    """

    def __init__(self, input_size: int, hidden_size: int, faithful: bool = False) -> None:
        super().__init__()
        self.hidden_size, self.faithful = hidden_size, faithful
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty((hidden_size if faithful else 3 * hidden_size), hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(hidden_size if faithful else 3 * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)  # torch's initialisation of its recurrent cells
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_part(self, x: torch.Tensor) -> torch.Tensor:
        """W x + b_i for the three gates: computed for a whole sequence at once, outside the time loop."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def step(self, gi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        i_r, i_z, i_n = gi.chunk(3, -1)
        if self.faithful:
            r, z = torch.sigmoid(i_r + h), torch.sigmoid(i_z + h)
            h_n = F.linear(h, self.weight_hh, self.bias_hh)
        else:
            h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, -1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.step(self.input_part(x), h)


# --------------------------------------------------------------------------- one recurrent layer, any cell
class Recurrent(nn.Module):
    """One layer of rnn / gru / lstm (torch's) or gru_scratch over (B, T, H) inputs, batch first.

    The state is (B, H), or an (h, c) pair for the LSTM. With `lengths`, padded steps do not
    change the state (torch's layers via packing, the scratch cell via a mask), so the final
    state is that of each sentence's last word. Packing reads the lengths on the CPU, so they
    are given there; the scratch cell's mask is made from them unless `live` (B, T), True at
    real steps, is given on the device already (the encoder's `src != PAD`): copying lengths
    to the device would wait for it every batch.
    """

    def __init__(self, cell: str, size: int, faithful: bool = False) -> None:
        super().__init__()
        self.cell = cell
        if cell == "gru_scratch":
            self.layer = ScratchGRUCell(size, size, faithful)
        else:
            layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
            self.layer = layer(size, size, batch_first=True)

    def forward(self, x: torch.Tensor, state: Any = None, lengths: torch.Tensor | None = None,
                live: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        if self.cell == "gru_scratch":
            if live is None and lengths is not None:
                live = (torch.arange(x.shape[1], device=lengths.device)[None, :] < lengths[:, None]).to(x.device)
            return self._scratch(x, state, live)
        if state is not None:
            state = tuple(s.unsqueeze(0) for s in state) if self.cell == "lstm" else state.unsqueeze(0)
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, state = self.layer(packed, state)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            out, state = self.layer(x, state)
        state = tuple(s.squeeze(0) for s in state) if self.cell == "lstm" else state.squeeze(0)
        return out, state

    def _scratch(self, x: torch.Tensor, h: torch.Tensor | None, live: torch.Tensor | None):
        if h is None:
            h = x.new_zeros(x.shape[0], self.layer.hidden_size)
        gi = self.layer.input_part(x)
        outs = []
        for t in range(x.shape[1]):
            new = self.layer.step(gi[:, t], h)
            h = new if live is None else torch.where(live[:, t, None], new, h)
            outs.append(h)
        return torch.stack(outs, 1), h


# --------------------------------------------------------------------------- encoder / decoder
class Seq2Seq(nn.Module):
    """Encoder = embedding + recurrent layer; decoder = embedding + recurrent layer (+ attention) + linear.

    Attention is Luong's "general" global attention (score = h_dec . W h_enc over the source
    words, then tanh(W_c [context; h_dec])): it needs only the decoder's own outputs, so with
    full teacher forcing the decoder runs over the whole target in one call.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.attention = cfg.attention
        self.src_embed = nn.Embedding(src_vocab, h, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab, h, padding_idx=PAD)
        self.encoder = Recurrent(cfg.cell, h, cfg.faithful)
        self.decoder = Recurrent(cfg.cell, h, cfg.faithful)
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.attention:
            self.score = nn.Linear(h, h, bias=False)
            self.combine = nn.Linear(2 * h, h)
        self.out = nn.Linear(h, tgt_vocab)

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """`lengths` on the CPU (see Recurrent); the mask of real words, `src != PAD`, serves the encoder
        and the attention."""
        mask = src != PAD
        memory, state = self.encoder(self.dropout(self.src_embed(src)), None, lengths, mask)
        return memory, state, mask

    def _logits(self, dec: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        if self.attention:
            scores = torch.bmm(dec, self.score(memory).transpose(1, 2))  # (B, T, S)
            weights = scores.masked_fill(~src_mask[:, None, :], float("-inf")).softmax(-1)
            dec = torch.tanh(self.combine(torch.cat([torch.bmm(weights, memory), dec], -1)))
        return self.out(self.dropout(dec))

    def decode(self, tgt_in: torch.Tensor, state: Any, memory: torch.Tensor, src_mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Logits (B, T, V) for the given decoder inputs, and the state after them."""
        dec, state = self.decoder(self.dropout(self.tgt_embed(tgt_in)), state)
        return self._logits(dec, memory, src_mask), state

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        memory, state, mask = self.encode(src, lengths)
        if teacher_forcing >= 1.0:
            return self.decode(tgt_in, state, memory, mask)[0]
        # Each sentence is either teacher-forced or fed its own predictions, decided per sentence.
        forced = torch.rand(src.shape[0], generator=generator, device=src.device) < teacher_forcing
        token, steps = tgt_in[:, :1], []
        for t in range(tgt_in.shape[1]):
            logits, state = self.decode(token, state, memory, mask)
            steps.append(logits)
            if t + 1 < tgt_in.shape[1]:
                token = torch.where(forced[:, None], tgt_in[:, t + 1 : t + 2], logits.argmax(-1))
        return torch.cat(steps, 1)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, lengths: torch.Tensor, max_steps: int) -> torch.Tensor:
        """(B, <= max_steps) most likely next words, fed back one step at a time, until every sentence has EOS."""
        memory, state, mask = self.encode(src, lengths)
        token = torch.full((src.shape[0], 1), SOS, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        out = []
        for t in range(max_steps):
            logits, state = self.decode(token, state, memory, mask)
            token = logits.argmax(-1)
            out.append(token)
            done |= token[:, 0] == EOS
            if t % 8 == 7 and bool(done.all()):  # an occasional check: each one waits for the device
                break
        return torch.cat(out, 1)


def build_model(cfg: Seq2SeqConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    return Seq2Seq(src_vocab, tgt_vocab, cfg)


# --------------------------------------------------------------------------- data for one trial
class Split:
    """One split's filtered pairs as padded tensors on the trial's device, plus host-side lengths.

    The lengths stay on the host only: batches are cut and packed there, and a batch's rows
    reach the device in one copy per pass over the split (`batches`), not one per batch.
    """

    def __init__(self, data: SentencePairs, idx: np.ndarray, src_map: np.ndarray, tgt_map: np.ndarray,
                 device: torch.device) -> None:
        self.idx = idx
        fr = [src_map[data.french.sentence(i)] for i in idx]
        en = [tgt_map[data.english.sentence(i)] for i in idx]
        self.src_len = np.array([len(s) + 1 for s in fr], dtype=np.int64)  # + EOS
        self.tgt_len = np.array([len(s) + 1 for s in en], dtype=np.int64)  # + SOS / EOS
        self.src = torch.tensor(pad_rows(fr, end=EOS), device=device)
        self.tgt_in = torch.tensor(pad_rows(en, start=SOS), device=device)
        self.tgt_out = torch.tensor(pad_rows(en, end=EOS), device=device)
        # References for BLEU: the real English words, never <unk>.
        self.references = [detokenize(data.text("english", i)) for i in idx]

    def __len__(self) -> int:
        return len(self.idx)

    def batch(self, rows: np.ndarray, on_device: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(src, lengths on the CPU, tgt_in, tgt_out) of `rows`, cut to the longest sentence among them (few
        pads when lengths are similar). `on_device`: the same rows already on the device, else copied here."""
        s, t = int(self.src_len[rows].max()), int(self.tgt_len[rows].max())
        if on_device is None:
            on_device = torch.as_tensor(rows, device=self.src.device)
        lengths = torch.from_numpy(self.src_len[rows])
        return self.src[on_device, :s], lengths, self.tgt_in[on_device, :t], self.tgt_out[on_device, :t]

    def batches(self, plan: list[np.ndarray]) -> Iterator[tuple[np.ndarray, tuple[torch.Tensor, ...]]]:
        """(rows, `batch(rows)`) for each batch of `plan`, every batch's rows copied to the device in one go."""
        if not plan:
            return
        on_device = torch.as_tensor(np.concatenate(plan), device=self.src.device).split([len(rows) for rows in plan])
        for rows, rows_there in zip(plan, on_device):
            yield rows, self.batch(rows, rows_there)


def bucketed_batches(lengths: np.ndarray, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar source lengths: shuffle, sort within chunks, shuffle the batches."""
    order = torch.randperm(len(lengths), generator=generator).numpy()
    batches = []
    chunk = batch_size * BUCKET_BATCHES
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


# --------------------------------------------------------------------------- the trainer
class Trainer(LoopTrainer):
    """Seq2SeqConfig -> vocabularies from the filtered training pairs, model, optimizer."""

    cfg: Seq2SeqConfig

    def __init__(self, cfg: Seq2SeqConfig, data: SentencePairs, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        chosen = {s: data.select(s, cfg.max_length, cfg.eng_prefix_filter) for s in ("train", "val", "test")}
        if len(chosen["train"]) == 0:
            raise ValueError(f"no training pair is shorter than max_length={cfg.max_length} words"
                             + (" and has an English prefix" if cfg.eng_prefix_filter else ""))
        train = chosen["train"]
        self.src_vocab = Vocab.from_ids(np.concatenate([data.french.sentence(i) for i in train]), data.words)
        self.tgt_vocab = Vocab.from_ids(np.concatenate([data.english.sentence(i) for i in train]), data.words)
        src_map, tgt_map = self.src_vocab.table_map(data.words), self.tgt_vocab.table_map(data.words)
        self.splits = {s: Split(data, idx, src_map, tgt_map, device) for s, idx in chosen.items()}
        self.model = build_model(cfg, len(self.src_vocab), len(self.tgt_vocab)).to(device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        steps = -(-len(train) // cfg.batch_size)
        self.scheduler = make_schedule(cfg, self.optimizer, steps)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """NLL of the log-softmax over the target words, padding masked out."""
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction=reduction)

    def train_epoch(self) -> dict[str, float]:
        split = self.splits["train"]
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        plan = bucketed_batches(split.src_len, self.cfg.batch_size, self.generator)
        for rows, (src, lengths, tgt_in, tgt_out) in split.batches(plan):
            logits = self.model(src, lengths, tgt_in, self.cfg.teacher_forcing, self.device_generator)
            words = int(split.tgt_len[rows].sum())
            loss = self.loss(logits, tgt_out, "sum") / words
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            loss_sum += loss.detach() * words
            tokens += words + int(split.src_len[rows].sum())
        target_words = int(split.tgt_len.sum())
        return {"train_loss": loss_sum.item() / target_words, "samples": tokens}

    @torch.no_grad()
    def split_loss(self, split: Split) -> float:
        self.model.eval()
        total = torch.zeros((), device=self.device)
        plan = [np.arange(start, min(start + EVAL_BATCH, len(split))) for start in range(0, len(split), EVAL_BATCH)]
        for _, (src, lengths, tgt_in, tgt_out) in split.batches(plan):
            total += self.loss(self.model(src, lengths, tgt_in), tgt_out, "sum")
        return total.item() / max(1, int(split.tgt_len.sum()))

    @torch.no_grad()
    def translate_split(self, split: Split, limit: int | None = None) -> list[str]:
        """Greedy translations of the split's sources (the first `limit`), detokenised."""
        self.model.eval()
        n = len(split) if limit is None else min(limit, len(split))
        order = np.argsort(split.src_len[:n], kind="stable")  # similar lengths per batch
        outputs: list[str] = [""] * n
        plan = [order[start : start + EVAL_BATCH] for start in range(0, n, EVAL_BATCH)]
        for rows, (src, lengths, _, _) in split.batches(plan):
            found = self.model.greedy(src, lengths, self.cfg.max_length + 1).cpu().tolist()
            for row, ids in zip(rows, found):
                outputs[row] = detokenize(self.tgt_vocab.decode(ids))
        return outputs

    def bleu(self, split: Split) -> float:
        return corpus_bleu(self.translate_split(split), split.references)

    def evaluate(self) -> dict[str, float]:
        val, test = self.splits["val"], self.splits["test"]
        return {"val_loss": self.split_loss(val), "val_bleu": self.bleu(val), "test_bleu": self.bleu(test)}

    def state_dict(self) -> dict[str, Any]:
        # The vocabularies are part of the model: `tune-lab translate` needs them without the data.
        return {**super().state_dict(), "vocab": {"src": self.src_vocab.words, "tgt": self.tgt_vocab.words}}


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """sacrebleu's corpus BLEU (0-100, its default 13a tokenisation) of detokenised lowercase sentences."""
    import sacrebleu

    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


# --------------------------------------------------------------------------- using a checkpoint
class Translator:
    """A saved checkpoint, ready to translate French sentences (CPU, eval mode)."""

    def __init__(self, checkpoint: str | pathlib.Path) -> None:
        from labspec.config import config_from_dict
        from trainables.loop import load_checkpoint

        self.saved = load_checkpoint(checkpoint)
        self.cfg = config_from_dict(Seq2SeqConfig, self.saved["config"])
        vocab = self.saved["state"]["vocab"]
        self.src_vocab, self.tgt_vocab = Vocab(list(vocab["src"])), Vocab(list(vocab["tgt"]))
        self.model = build_model(self.cfg, len(self.src_vocab), len(self.tgt_vocab))
        self.model.load_state_dict(self.saved["state"]["model"])
        self.model.eval()

    def unknown_words(self, sentence: str) -> list[str]:
        return [w for w in normalize(sentence) if w not in self.src_vocab.index]

    def translate(self, sentences: list[str]) -> list[str]:
        """French sentences -> English; words the model never saw become <unk> on the way in."""
        encoded = [self.src_vocab.encode(normalize(s)) for s in sentences]
        src = torch.tensor(pad_rows([np.array(e, dtype=np.int64) for e in encoded], end=EOS))
        lengths = torch.tensor([len(e) + 1 for e in encoded])
        steps = max(self.cfg.max_length, int(lengths.max())) + 1
        found = self.model.greedy(src, lengths, steps).tolist()
        return [detokenize(self.tgt_vocab.decode(ids)) for ids in found]


def _test_pairs(data: SentencePairs, cfg: Seq2SeqConfig, n: int) -> tuple[list[str], list[str]]:
    idx = data.select("test", cfg.max_length, cfg.eng_prefix_filter)[:n]
    return ([" ".join(data.text("french", i)) for i in idx], [detokenize(data.text("english", i)) for i in idx])


def report_text(checkpoint_dir: str, data: SentencePairs) -> str:
    """Ten test sentences through the best checkpoint, in the lab's "> source / = reference / < output" form."""
    translator = Translator(checkpoint_dir)
    sources, references = _test_pairs(data, translator.cfg, 10)
    outputs = translator.translate(sources)
    lines = ["## Sample translations (test split, greedy decoding)", "", "```"]
    for src, ref, out in zip(sources, references, outputs):
        lines += [f"> {src}", f"= {ref}", f"< {out}", ""]
    return "\n".join(lines + ["```"])


report_figures = sample_images = None  # the parts of the lab contract (labspec.registry.LabModule) this lab leaves out
