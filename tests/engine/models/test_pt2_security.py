"""A ``.pt2`` program never runs code from the file without consent (issue 32): every malicious twin
(payload in the sample inputs, a ``use_pickle`` weight or constant, an opaque constant, the legacy
weight/constant files) is refused as a pickle that names code, through the loader and through every
command that loads models; the marker file its payload would create never appears. Honest programs
still load, and a trusted twin is read as torch reads it."""
from __future__ import annotations

import pytest
import torch

from conftest import write_colour_dataset
from kdx_engine.cli import main
from kdx_engine.models.loading import UntrustedPickleError, load_model
from pt2_files import INPUT_SIZE, honest_program, malicious_programs


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pt2")
    marker = folder / "MARKER"
    return marker, malicious_programs(folder / "twins", marker), honest_program(folder / "honest.pt2", seed=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_colour_dataset(tmp_path_factory.mktemp("data") / "data", ("a", "b", "c"), per_class=2,
                                size=INPUT_SIZE)


def test_every_malicious_twin_is_refused_by_the_loader_and_runs_nothing(programs):
    marker, twins, _ = programs
    assert len(twins) == 8
    for name, path in twins.items():
        with pytest.raises(UntrustedPickleError, match=rf"{path.name}: torch.export program .*eval.*--trust-pickle"):
            load_model(path)
        assert not marker.exists(), name


def test_an_honest_program_loads_and_gives_the_modules_logits(programs):
    _, _, honest = programs
    backend = load_model(honest)
    assert backend.info.format == "torch_export" and backend.info.num_classes == 3
    assert backend.info.preprocessing.input_size == INPUT_SIZE
    program = torch.export.load(str(honest))
    x = torch.randn(1, 3, INPUT_SIZE, INPUT_SIZE)  # exported with a batch of 1
    torch.testing.assert_close(backend.logits(x), program.module()(x), rtol=0, atol=0)


def test_a_trusted_twin_is_read_as_torch_reads_it(programs, tmp_path):
    marker, twins, _ = programs
    backend = load_model(twins["sample inputs, valid"], trust_pickle=True)
    assert backend.info.num_classes == 3
    assert marker.exists()  # consent given: the file's own code ran, as torch.export.load runs it
    marker.unlink()


def _commands(twin, honest, dataset, out):
    image = str(next((dataset / "a").iterdir()))
    t, h, d = str(twin), str(honest), str(dataset)
    return {
        "info": ["info", t],
        "explain": ["explain", "--method", "gradcam", "--model", t, image, "--out", str(out)],
        "export": ["export", "--teacher", h, "--student", t, image, "--out", str(out / "fig.png")],
        "scan teacher": ["scan", d, "--teacher", t, "--student", h, "--out", str(out)],
        "scan student": ["scan", d, "--teacher", h, "--student", t, "--out", str(out)],
        "scan base": ["scan", d, "--teacher", h, "--student", h, "--base", t, "--out", str(out)],
        "metrics": ["metrics", "--teacher", t, "--student", h, "--dataset", d, "--out", str(out / "m.json")],
        "concepts": ["concepts", "--student", t, d, "--out", str(out), "--grid", "4", "--draws", "4"],
    }


@pytest.mark.parametrize("command", ["info", "explain", "export", "scan teacher", "scan student", "scan base",
                                     "metrics", "concepts"])
def test_no_command_runs_the_code_of_a_program_that_returns_valid_inputs(programs, dataset, tmp_path, capfd,
                                                                        command):
    marker, twins, honest = programs
    twin = twins["sample inputs, valid"]
    out = tmp_path / "out"
    code = main(_commands(twin, honest, dataset, out)[command])
    err = capfd.readouterr().err
    assert code == 2, err
    assert f"{twin.name}: torch.export program whose pickled parts name code" in err
    assert "Traceback" not in err
    assert not marker.exists()
    assert not out.exists() or not any(out.rglob("*.*"))


def test_kdx_info_refuses_every_twin(programs, capfd):
    marker, twins, _ = programs
    for path in twins.values():
        assert main(["info", str(path)]) == 2
        assert f"kdx: error: {path.name}: torch.export program" in capfd.readouterr().err
    assert not marker.exists()
