"""Whatever a search file says, the loader either accepts it or refuses it with one clear line."""
from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tune_lab.spaces import DISTRIBUTIONS, TOP_LEVEL_KEYS, Search, SearchSpaceError, load_search

KEYS = st.sampled_from(["epochs", "batch_size", "lr", "optimizer", "momentum", "faithful", "loss", "seed", "colour"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["sgd", "adam", "mlp", "nll", "", "grid", "val_acc", "max"]), st.text(max_size=8),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)
PARAM = st.dictionaries(st.sampled_from([*DISTRIBUTIONS, "normal"]), VALUES, min_size=0, max_size=2)
DOCUMENTS = st.fixed_dictionaries(
    {"lab": st.one_of(st.just("mlp"), st.sampled_from(["resnet", "nope", 3]))},  # a user's file names its lab
    optional={
        "metric": st.sampled_from(["val_acc", "val_loss", "bleu", 1]),
        "mode": st.sampled_from(["min", "max", "sideways"]),
        "fixed": st.one_of(st.dictionaries(KEYS, SCALARS, max_size=4), VALUES),
        "params": st.one_of(st.dictionaries(KEYS, PARAM, max_size=3), VALUES),
        "search": st.sampled_from(["grid", "random", "optuna", "bayes"]),
        "num_samples": SCALARS,
        "scheduler": st.one_of(st.sampled_from(["asha", "fifo", "pbt"]), st.dictionaries(st.sampled_from(["asha", "fifo"]), VALUES, max_size=1)),
        "sweeps": st.one_of(st.dictionaries(KEYS, st.lists(SCALARS, max_size=3), max_size=2), VALUES),
        "variants": VALUES,
        "extra": SCALARS,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=DOCUMENTS)
def test_any_document_is_accepted_or_refused_cleanly(tmp_path, doc):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        search = load_search(str(path), "mlp")
    except SearchSpaceError as exc:
        message = str(exc)
        assert "\n" not in message and (str(path) in message or message.startswith("unknown search"))
    else:
        assert isinstance(search, Search) and set(doc) <= set(TOP_LEVEL_KEYS)
        assert search.lab == "mlp" and search.num_samples >= 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text_is_accepted_or_refused_cleanly(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_search(str(path), "mlp")
    except SearchSpaceError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
