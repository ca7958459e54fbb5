"""tune-lab runs only on the Ray it was tested with, and says so in one line on any other."""
import re
from pathlib import Path

import pytest

from tune_lab.ray_internals import TESTED_RAY, ray_version_problem, require_tested_ray


@pytest.mark.parametrize("found", ["2.60.0", "2.60.3", "2.60.1rc1"])
def test_a_tested_ray_passes(found):
    assert ray_version_problem(found) is None


@pytest.mark.parametrize("found", ["2.59.9", "2.61.0", "3.0.0", "2.6.0", None])
def test_another_ray_gets_one_line_that_says_what_to_install(found):
    problem = ray_version_problem(found)
    assert problem == (f"tune-lab needs Ray >=2.60,<2.61 (tested); found {found or 'none'}: "
                       "pip install 'ray[default,tune]==2.60.0'")


def test_the_installed_ray_is_the_tested_one():
    require_tested_ray()  # would exit 2


def test_pyproject_pins_the_tested_range():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'"ray\[[a-z,]*\]([^"]*)"', pyproject).group(1) == TESTED_RAY


def test_the_trial_number_is_what_rays_generators_count_trials_by():
    """`trial_number` reads Trial.experiment_tag's leading count (the order schedulers judge trials in)."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from tune_lab.ray_internals import trial_number

    tune.register_trainable("tune_lab_numbered", lambda config: None)
    generator = BasicVariantGenerator(random_state=0)
    generator.add_configurations({"numbered": {"run": "tune_lab_numbered",
                                               "config": {"lr": tune.grid_search([0.1, 0.2, 0.3])}}})
    made = [generator.next_trial() for _ in range(3)]
    assert [trial_number(t) for t in made] == [0, 1, 2]


def test_the_optuna_study_and_trials_behind_rays_searcher():
    from ray import tune

    from tune_lab.ray_internals import optuna_study, optuna_trial
    from tune_lab.schedulers import OrderedOptunaSearch

    searcher = OrderedOptunaSearch(seed=0, first_rung=1)
    searcher.set_search_properties("val_acc", "max", {"lr": tune.loguniform(1e-4, 1e-1)})
    params = searcher.suggest("t0")
    assert optuna_trial(searcher, "t0").params == params
    assert [t.number for t in optuna_study(searcher).get_trials(deepcopy=False)] == [0]
