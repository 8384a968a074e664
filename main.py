"""``python main.py [FILES...]``: the KDX window, opened on the bundled demo when no files are given."""
import sys
import time

STARTED = time.time()  # before any import, so start-up timings include them

from kdx_gui.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], started=STARTED))
