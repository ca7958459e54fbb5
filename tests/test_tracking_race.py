"""Searches started together on a fresh results root share one MLflow store without a crash."""
import subprocess
import sys
import textwrap

from mlflow.tracking import MlflowClient

START_SEARCH_RUN = textwrap.dedent("""
    import sys
    from tune_lab.tracking import Store
    run = Store(sys.argv[1], "mlp", None).start_run(sys.argv[2], tags={})
    print(run.experiment_id, run.run_id)
""")


def test_parent_runs_created_at_once_on_a_new_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    drivers = [subprocess.Popen([sys.executable, "-c", START_SEARCH_RUN, uri, f"search-{i}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outputs = [d.communicate(timeout=300) for d in drivers]
    for driver, (out, err) in zip(drivers, outputs):
        assert driver.returncode == 0, err[-2000:]
    experiments = {out.split()[0] for out, _ in outputs}
    assert len(experiments) == 1  # one "mlp" experiment, whoever created it
    runs = MlflowClient(uri).search_runs(list(experiments))
    assert sorted(r.info.run_name for r in runs) == ["search-0", "search-1", "search-2"]
