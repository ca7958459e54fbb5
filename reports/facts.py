"""What a search actually ran, said the same way in every report, the terminal and MLflow.

Why this exists: a report that says "Dataset: mnist" over a 2,000-image, 2-epoch smoke run gets
handed in as a full-MNIST result, and a one-seed table reads as a verdict. So every report states
the data and split sizes used, `--subset`, every `--set`, the seeds, and each way the network and its
training differ from the lab as written (labs.md), and a one-seed report says which of its gaps the
seed alone could make, from the spread measured in docs/results.md ("Seed spread").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reports import units
from reports.record import Summary

# The lab as written (labs.md), for each setting where tune-lab's default differs: key -> (the lab's
# value, how to say our value). `{value}` is our value. Only settings that change the network or its
# training are here; a search's own --set values and searched parameters are stated elsewhere.
AS_WRITTEN: dict[str, dict[str, tuple[Any, str]]] = {
    "mlp": {
        "faithful": (True, "plain logits out (the lab: ReLU + softmax on the output layer, softmaxed again by the loss)"),
        "dropout": (0.0, "dropout {value} after each hidden layer (the lab: none)"),
        "weight_decay": (0.0, "weight decay {value} (the lab: none)"),
        "lr_schedule": ("constant", "{value} learning-rate schedule (the lab: constant)"),
    },
    "resnet": {
        "faithful": (True, "the lab's ResNet18 corrected where asked (faithful: false)"),
        "stem": ("imagenet", "{value} stem: conv3x3 stride 1, no maxpool (the lab: conv7x7 stride 2 + maxpool)"),
        "augment": (False, "random crop + flip augmentation (the lab: none)"),
        "label_smoothing": (0.0, "label smoothing {value} (the lab: none)"),
        "lr_schedule": ("constant", "{value} learning-rate schedule (the lab: constant)"),
    },
    "seq2seq": {
        "optimizer": ("sgd", "{value} (the lab: SGD)"),
        "lr": (0.01, "lr {value} (the lab: 0.01)"),
        "batch_size": (1, "batches of {value} pairs (the lab: one pair a step)"),
        "hidden_size": (512, "hidden size {value} (the lab: 512)"),
        "attention": (False, "Luong attention (the lab: none)"),
        "dropout": (0.0, "dropout {value} (the lab: none)"),
        "grad_clip": (0.0, "gradients clipped at norm {value} (the lab: no clipping)"),
    },
    "ae": {
        "faithful": (True, "the corrected network (the lab's as written: faithful: true)"),
        "channels": ("lab", "the dataset's own channels (the lab: 3 channels, a grey image repeated)"),
    },
    "vae": {
        "faithful": (True, "the ELBO loss, summed per image (the lab: MSE per pixel + KL per image)"),
        "channels": ("lab", "the dataset's own channels (the lab: 3 channels)"),
        "lr": (0.01, "lr {value} (the lab: 0.01)"),
        "latent_dim": (128, "{value} latent dimensions (the lab: 128)"),
        "prior": ("normal", "samples from a {value} prior fitted to the codes (the lab: N(0, I))"),
    },
    "wgan": {
        "faithful": (True, "a per-image normalised critic (the lab: BatchNorm critic with weight clipping)"),
        "critic": ("clip", "critic trained with {value} (the lab: weight clipping)"),
        "lr": (0.002, "lr {value} (the lab: 0.002)"),
        "epochs": (100, "{value} epochs (the lab: 100)"),
    },
    "cgan": {
        "faithful": (True, "a conditional DCGAN with a projection discriminator (the lab: a 10-sigmoid discriminator "
                           "that never sees the label)"),
        "optimizer": ("sgd", "{value} (the lab: SGD)"),
        "aux_weight": (0.0, "auxiliary digit classifier in D, weight {value} (the lab: none)"),
    },
}
# Settings the lab's network as written ignores: said only for the corrected network.
IGNORED_WHEN_FAITHFUL = {"mlp": {"dropout"}, "resnet": {"stem", "augment", "label_smoothing"},
                         "wgan": {"critic"}, "cgan": {"aux_weight"}, "vae": {"latent_dim", "prior"}}


@dataclass(frozen=True)
class SeedSpread:
    """A lab's measured seed-to-seed standard deviation of one metric (data units), and where."""

    std: float
    conditions: str


# Measured in docs/results.md, "Seed spread": (lab, dataset, metric) -> (spread of a run on every
# training sample, spread of a small --subset run). The best setting's std over 5 seeds. A report of
# another lab, dataset or metric says it has no measurement rather than borrow one.
SEED_SPREADS: dict[tuple[str, str, str], tuple[SeedSpread, SeedSpread]] = {
    ("mlp", "mnist", "val_acc"): (SeedSpread(0.0013, "full MNIST, 20 epochs, Adam, 5 seeds"),
                                  SeedSpread(0.0074, "--subset 2000, 2 epochs, Adam, 5 seeds")),
}
# Two one-seed values each off by the seed with std s differ by the seed alone with std s*sqrt(2);
# 95 % of such differences lie within 1.96 of that.
NOISE_FACTOR = 1.96 * math.sqrt(2)


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def base_config(record: Summary) -> dict[str, Any]:
    """The settings every trial shares: the lab's defaults under the search's fixed values (--set included)."""
    from labspec.config import defaults
    from labspec.registry import get_lab

    try:
        config = defaults(get_lab(record["lab"]).config)
    except Exception:  # a lab of one's own that cannot be imported here: the fixed values alone
        config = {}
    return {**config, **(record.get("fixed") or {})}


def differences(record: Summary) -> list[str]:
    """Each way the shared setting differs from the lab as written, in words; searched, swept and variant
    settings are left out (they differ from trial to trial and the table shows them)."""
    table = AS_WRITTEN.get(record["lab"], {})
    config = base_config(record)
    per_trial = set(record.get("varied") or []) | set(record.get("params") or {})
    for values in (record.get("variants") or {}).values():
        per_trial |= set(values)
    faithful = config.get("faithful") is True or "faithful" in per_trial
    out = []
    for key, (lab_value, phrase) in table.items():
        if key in per_trial or key not in config or config[key] == lab_value:
            continue
        if faithful and key in IGNORED_WHEN_FAITHFUL.get(record["lab"], set()):
            continue
        out.append(phrase.format(value=_value(config[key])))
    return out


def set_values(record: Summary) -> str:
    overrides = record.get("overrides") or {}
    return ", ".join(f"{k}={_value(v)}" for k, v in overrides.items())


def data_line(record: Summary) -> str:
    """'mnist: 2000 train / 5000 val / 10000 test (--subset 2000 of the training split)'."""
    split = record.get("split")
    line = f"{record['dataset']}" + (f": {split}" if split else "")
    if record.get("subset"):
        line += f" (--subset {record['subset']}: the training split cut to {record['subset']:,} samples, not the whole)"
    elif split:
        line += " (every sample)"
    return line


def seeds_line(record: Summary) -> str:
    seed = record.get("seed")
    first = 0 if seed is None else seed
    repeats = record.get("repeats") or 1
    if repeats > 1:
        return f"{repeats} per setting (--repeats {repeats}: seeds {first} to {first + repeats - 1}); the tables give mean ± std"
    return f"one seed per setting (seed {first}{'' if seed is not None else ', the default'}; no --repeats)"


def run_facts(record: Summary) -> list[tuple[str, str]]:
    """(name, value) lines of what was run, in the order every report shows them."""
    diffs = differences(record)
    return [
        ("Data", data_line(record)),
        ("--set", set_values(record) or "none"),
        ("Seeds", seeds_line(record)),
        ("Differs from the lab as written", "; ".join(diffs) if diffs else "nothing in the shared settings"),
    ]


def spread_for(record: Summary) -> SeedSpread | None:
    """The measured spread closest to this run: the small run's for a --subset run, else the full run's."""
    spreads = SEED_SPREADS.get((record["lab"], record.get("dataset"), record["metric"]))
    return None if spreads is None else spreads[1] if record.get("subset") else spreads[0]


def within_noise(record: Summary, gap: float) -> bool | None:
    """Whether a one-seed gap of the searched metric (data units) lies inside what the seed alone makes;
    None where the lab's spread is not measured."""
    spread = spread_for(record)
    return None if spread is None else abs(gap) <= NOISE_FACTOR * spread.std


def seed_note(record: Summary) -> str:
    """A one-seed search's warning: it is one seed, which gaps the seed could make, and --repeats.
    '' for a search with --repeats (its table has error bars and verdicts)."""
    if (record.get("repeats") or 1) > 1:
        return ""
    metric = record["metric"]
    best = (record.get("best") or {}).get("metrics", {}).get(metric)
    text = "One seed per setting: a gap between two rows may be the seed, not the setting."
    spread = spread_for(record)
    if spread is None:
        text += (f" The seed spread of {record['lab']}'s {metric} on {record.get('dataset') or 'its data'} is not measured "
                 f"(docs/results.md, 'Seed spread').")
    else:
        limit = NOISE_FACTOR * spread.std
        text += (f" Measured seed std of {metric}: {units.gap(metric, 0, spread.std)} ({spread.conditions}; "
                 f"docs/results.md): gaps under {units.gap(metric, 0, limit)} lie inside it.")
        if best is not None:
            scored = [t for t in record["trials"] if (t.get("best") or {}).get(metric) is not None
                      and t["trial_id"] != record["best"]["trial_id"]]
            inside = [t for t in scored if abs(t["best"][metric] - best) <= limit]
            if scored:
                text += (f" Here {len(inside)} of the {len(scored)} other settings are that close to the best."
                         if inside else f" Here every other setting is further behind than that.")
    return text + f" Run with --repeats 3 (or more) for error bars and a tied / worse verdict."


def behind(record: Summary, gap: float) -> str:
    """How a reproduce paragraph words a gap of the searched metric: '0.41 points behind', 'tied'."""
    return "tied" if gap == 0 else f"{units.gap(record['metric'], 0, gap)} behind"


def noise_words(record: Summary, gap: float) -> str:
    """Whether a one-seed gap could be the seed, as the reports word it: 'inside the seed spread',
    'beyond the seed spread', 'one seed, spread not measured'; '' with --repeats (the verdict says it)."""
    if (record.get("repeats") or 1) > 1 or gap == 0:
        return ""
    noise = within_noise(record, gap)
    return "one seed, spread not measured" if noise is None else f"{'inside' if noise else 'beyond'} the seed spread"


def description(record: Summary) -> str:
    """The MLflow parent run's description (Markdown): the question and what was run."""
    lines = [record.get("description") or record["search"], ""]
    lines += [f"- **{name}**: {value}" for name, value in run_facts(record)]
    return "\n".join(lines)


def closing_lines(record: Summary) -> list[str]:
    """What the terminal prints under the table and the best trial: what was run (the one-seed warning is
    among the table's notes, as in the report)."""
    return [f"{name}: {value}" for name, value in run_facts(record)]
