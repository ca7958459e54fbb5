"""examples/notebook.ipynb, executed top to bottom in a real Jupyter kernel (nbclient + ipykernel).

The kernel is a process of its own with its own Ray, as a student's is; it reads the tiny MNIST
this suite writes (TUNE_LAB_DATA) and writes into this test's results root (TUNE_LAB_HOME).
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


def outputs_of(cell) -> list[dict]:
    return list(cell.get("outputs", []))


def test_the_example_notebook_runs_in_a_real_kernel(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_LAB_DATA", str(tiny_mnist))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    nbformat.write(notebook, tmp_path / "executed.ipynb")  # what a failure left, to look at

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in code for o in outputs_of(cell) if o.get("output_type") == "error"]
    search_cell = next(cell for cell in code if 'tune_lab.search("mlp"' in cell.source)
    shown = [o["data"].get("text/html", "") for o in outputs_of(search_cell) if "data" in o]
    assert any("val_acc_pct" in html and "<table" in html for html in shown)  # the Result's own view
    assert any("3 of 3 trials done" in html for html in shown)  # the progress line, updated to the end
    assert not any("== Status ==" in o.get("text", "") for o in outputs_of(search_cell))  # no Ray status tables
    table_cell = next(cell for cell in code if "table[[" in cell.source)
    table_html = next(o["data"]["text/html"] for o in outputs_of(table_cell) if "data" in o)
    assert "val_acc_pct" in table_html and "adadelta" in table_html
    plot_cell = next(cell for cell in code if "plot.bar" in cell.source)
    assert any("image/png" in o.get("data", {}) for o in outputs_of(plot_cell))
    own_cell = next(cell for cell in code if 'tune_lab.search("smallcnn"' in cell.source)
    own_html = next(o["data"]["text/html"] for o in outputs_of(own_cell) if "data" in o and "text/html" in o["data"]
                    and "<table" in o["data"]["text/html"])
    assert own_html.count("completed") == 2
    last = next(o for o in outputs_of(code[-1]) if o.get("output_type") == "execute_result")
    assert last["data"]["text/plain"] == "True"  # tune_lab.load gives back the same table
    assert (tmp_path / "smallcnn.yaml").is_file()
