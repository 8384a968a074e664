"""The bundle's ``kdx`` executable: the command line (``kdx info``, ``kdx explain``, …), headless."""
import multiprocessing
import sys

from kdx_engine.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes of a frozen app start through this executable
    sys.exit(main())
