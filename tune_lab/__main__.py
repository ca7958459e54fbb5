from tune_lab.cli import run

run()
