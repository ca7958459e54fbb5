import sys

from tune_lab.cli import main

sys.exit(main())
