"""`tune-lab generate`: images from the best checkpoint of a generative lab's latest search, and its errors."""
from __future__ import annotations

import pytest
from PIL import Image

from tune_lab.cli import main


def test_generate_vae_writes_a_grid_from_the_latest_search(tiny_vae_search, tmp_path, capsys):
    out = tmp_path / "samples.png"
    assert main(["generate", "vae", "--n", "16", "--out", str(out), "--storage", str(tiny_vae_search)]) == 0
    with Image.open(out) as image:
        # 4 x 4 images of 28 px with 2 px of padding around each
        assert image.size == (4 * 30 + 2, 4 * 30 + 2)
    assert str(out) in capsys.readouterr().out
    # the same seed draws the same images; another seed, others
    again, other = tmp_path / "again.png", tmp_path / "other.png"
    assert main(["generate", "vae", "--n", "16", "--out", str(again), "--experiment", "tiny-vae",
                 "--storage", str(tiny_vae_search)]) == 0
    assert main(["generate", "vae", "--n", "16", "--out", str(other), "--seed", "1",
                 "--storage", str(tiny_vae_search)]) == 0
    assert again.read_bytes() == out.read_bytes() != other.read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["vae", "--digit", "12"], "--digit 12: expected a digit 0-9"),
    (["vae", "--digit", "-1"], "--digit -1: expected a digit 0-9"),
    (["vae", "--digit", "7"], "--digit 7: lab vae is unconditional"),
    (["ae"], "generate ae: lab ae has no model to sample images from; labs that can generate: "),
    (["vae", "--out", "samples.jpg"], "expected a file name ending in .png"),
    (["vae", "--experiment", "nothing-here"], "--experiment nothing-here: no finished search there"),
    (["vae"], "no finished vae search with a checkpoint under"),
])
def test_generate_errors_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "x.png")]
    assert main(["generate", *argv, "--storage", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
