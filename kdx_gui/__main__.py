"""``python -m kdx_gui [FILES...]`` and the ``kdx-gui`` command: the KDX window, opened on the bundled demo
when no files are given (the same arguments as ``python main.py``)."""
import sys
import time


def main() -> int:
    """Open the window with the command line's arguments; the exit code of the Qt event loop."""
    started = time.time()  # before the window's imports, so start-up timings include them
    from kdx_gui.app import main as run_window

    return run_window(sys.argv[1:], started=started)


if __name__ == "__main__":
    sys.exit(main())
