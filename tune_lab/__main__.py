from tune_lab.cli import run

if __name__ == "__main__":  # not when a spawned process (tune_lab.runner's data process) imports it
    run()
