# The interpreter the venv is made with. 3.11 stays the default: torch==2.14.1 is installed for 3.11
# on the machines this project runs on, and `command -v python3.12` can name a pyenv shim with no 3.12
# behind it. Python 3.12 works and is preferred where it has torch (`make PY=python3.12`, on a fresh
# venv: `make clean` first): it makes None/True/False immortal, so kdx_gui/_runtime/pyside_fixes.py
# does nothing there.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test test-numerics lint bench clean package

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: venv
	$(BIN)/python main.py

lint: venv
	$(BIN)/lint-imports

test: venv lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -p no:logging
	$(MAKE) --no-print-directory test-numerics

# Float32 results depend on the kernels (oneDNN's or torch's own) and on the thread count, which differ
# between CPUs. The tests that compare two float32 computations (marked numerics) run again on two other
# paths, so a tolerance that only holds on this machine's path fails here: one thread with oneDNN off, and
# three threads (tests/conftest.py reads KDX_TEST_THREADS and KDX_TEST_NO_MKLDNN).
NUMERICS := QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -p no:logging -m 'numerics and not slow'
test-numerics: venv
	OMP_NUM_THREADS=1 KDX_TEST_THREADS=1 KDX_TEST_NO_MKLDNN=1 $(NUMERICS)
	KDX_TEST_THREADS=3 $(NUMERICS)

# The desktop bundle, one folder: dist/kdx/ with kdx-gui (the window on the demo), kdx (the command line),
# kdx.desktop, install_desktop_entry.sh and the icons. PyInstaller comes from the `package` extra; nothing
# else is downloaded. Takes many minutes (torch is collected whole); see packaging/kdx.spec.
package: venv
	$(BIN)/python -m pip install -q -e '.[package]'
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/package packaging/kdx.spec
	du -sh dist/kdx

clean:
	rm -rf $(VENV)
