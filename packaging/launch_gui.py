"""The bundle's ``kdx-gui`` executable: the KDX window, opened on the bundled demo when no files are given."""
import multiprocessing
import sys

from kdx_gui.__main__ import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes of a frozen app start through this executable
    sys.exit(main())
