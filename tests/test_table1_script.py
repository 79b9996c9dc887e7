"""scripts/table1.py: the commands it runs are Burda et al.'s setup, parsed by numpyvae's own
command line (a flag renamed there fails here, not hours into a run)."""

import importlib.util
from pathlib import Path

import pytest

from numpyvae.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("table1", ROOT / "scripts" / "table1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("row", ["vae1", "vae5", "iwae5", "iwae50"])
def test_train_commands_are_burdas_setup(row, tmp_path):
    table1 = load_script()
    cmd = table1.train_command(row, tmp_path, passes=121, seed=0)
    assert cmd[1:4] == ["-m", "numpyvae", "train"]
    args = build_parser().parse_args(cmd[3:])
    _, objective, k, _ = table1.ROWS[row]
    assert (args.objective, args.k, args.epochs) == (objective, k, 121)
    assert (args.hidden, args.latent, args.activation, args.init) == ([200, 200], 50, "tanh",
                                                                      "xavier")
    assert (args.batch_size, args.adam_eps, args.lr, args.schedule, args.output_bias,
            args.binarize) == (20, 1e-4, 1e-3, "burda", "data-mean", "dynamic")
    # with a checkpoint there, the row continues instead
    (tmp_path / row).mkdir()
    (tmp_path / row / "checkpoint.npz").write_bytes(b"")
    again = build_parser().parse_args(table1.train_command(row, tmp_path, 364, 0)[3:])
    assert again.resume and again.epochs == 364 and again.objective == objective
