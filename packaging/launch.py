"""The bundle's one executable. Started as ``kdx-gui`` (a link to it beside it) it opens the KDX window on
the bundled demo, as ``python main.py`` does; started as ``kdx`` it is the command line, headless. One
executable, so the bundle carries its Python modules once."""
import multiprocessing
import os
import sys


def main() -> int:
    if os.path.basename(sys.argv[0]).startswith("kdx-gui"):
        from kdx_gui.__main__ import main as open_window

        return open_window()
    from kdx_engine.cli import main as command_line

    return command_line()


if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes of a frozen app start through this executable
    sys.exit(main())
