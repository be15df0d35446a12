"""Issue 21, items 4 and 5: a run is tied to the data it trained on (root and tracks), and
``validate`` / ``test`` leave a run's training record as it was."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from test_resume_and_errors import BASE, fit_env  # noqa: F401 (a fixture)
from test_sweep import sweep_env, tiny_sweep  # noqa: F401 (a fixture)

from ablation.arguments import expand_cell
from ablation.cli import main


def args_without_root(tmp_path: Path, *extra: str) -> list[str]:
    """A 2-step fit of the tiniest net, whose root comes from $MUSDB_PATH."""
    return [
        "fit", "--config", BASE, "--cell=1d-depth2", "--model.filters=4",
        "--trainer.max_time=00:00:02:00", "--trainer.max_steps=2",
        "--trainer.log_every_n_steps=1", f"--run.dir={tmp_path / 'runs'}", "--run.name=run",
        *extra,
    ]  # fmt: skip


def copy_of(root: Path, to: Path) -> Path:
    shutil.copytree(root, to)
    return to


def test_the_cli_records_the_root_that_musdb_path_gives(fit_env, tmp_path, monkeypatch):  # noqa: F811
    from lightning_modules.lightning_cli import AblationCLI

    monkeypatch.setenv("MUSDB_PATH", str(fit_env))
    cli = AblationCLI(expand_cell(args_without_root(tmp_path)[1:]), run=False)
    assert cli.config.data.root == str(fit_env)


def test_a_finished_run_is_not_skipped_nor_resumed_on_other_data(fit_env, tmp_path, monkeypatch):  # noqa: F811
    """On main: `root: null` in config.yaml, so another MUSDB_PATH skipped (or resumed) the
    run as if it were the same data."""
    data = copy_of(fit_env, tmp_path / "data")
    monkeypatch.setenv("MUSDB_PATH", str(data))
    main(args_without_root(tmp_path))
    run = tmp_path / "runs" / "adhoc" / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["root"] == str(data)
    assert (run / "summary.json").exists() and (run / "data.json").exists()
    # the same tracks under another root
    monkeypatch.setenv("MUSDB_PATH", str(copy_of(fit_env, tmp_path / "other")))
    with pytest.raises(SystemExit) as exit_info:
        main(args_without_root(tmp_path))
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "cannot be skipped as finished" in message
    assert str(tmp_path / "other") in message and "\n" not in message
    # the recorded root, one of its tracks cut short: a resume is refused, naming the track
    monkeypatch.setenv("MUSDB_PATH", str(data))
    (run / "summary.json").unlink()  # as if killed after its last save
    track = sorted((data / "train").iterdir())[0]
    for stem in ("vocals", "drums", "bass", "other", "mixture"):
        audio, rate = sf.read(track / f"{stem}.wav")
        sf.write(track / f"{stem}.wav", audio[: rate * 2], rate)
    with pytest.raises(SystemExit) as exit_info:
        main(args_without_root(tmp_path, "--trainer.max_steps=3"))
    message = str(exit_info.value.code)
    assert "cannot resume" in message and "1 track(s) differ" in message
    assert re.search(rf"train/{track.name} (\d+) -> (\d+) samples", message)


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_leave_the_runs_record_alone(fit_env, tmp_path, subcommand):  # noqa: F811
    args = args_without_root(tmp_path, f"--data.root={fit_env}")
    main(args)
    run = tmp_path / "runs" / "adhoc" / "run"
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "metrics.csv")}
    ckpt = run / "checkpoints" / "last.ckpt"
    main([subcommand, *args[1:], f"--ckpt_path={ckpt}", "--data.segments_per_track=2"])
    after = {name: (run / name).read_bytes() for name in before}
    assert after == before
    own = run / subcommand
    assert (own / "metrics.csv").exists() and (own / "config.yaml").exists()
    main(args)  # and the run is still skipped as finished: its record is its own


@pytest.mark.slow
def test_the_sweep_runner_skips_a_finished_cell_only_with_its_arguments(
    sweep_env,  # noqa: F811
    tmp_path,
    capfd,
):
    """On main a cell with summary.json was "done earlier" whatever the YAML now said."""
    from ablation.sweep import run_sweep

    path = tiny_sweep(tmp_path, ["1d-depth2"])
    runs = tmp_path / "runs"
    assert run_sweep(path, runs_dir=runs, root=str(sweep_env), offline=True) == 0
    capfd.readouterr()
    assert run_sweep(path, runs_dir=runs, root=str(sweep_env), offline=True) == 0
    assert "done earlier, skipped" in capfd.readouterr().out
    tiny_sweep(tmp_path, ["1d-depth2"], budget="00:00:00:09")  # the budget changed
    assert run_sweep(path, runs_dir=runs, root=str(sweep_env), offline=True) == 1
    said = capfd.readouterr()
    assert "done earlier, skipped" not in said.out and "1 failed" in said.out
    assert "started with other arguments (trainer.max_time 00:00:00:06 -> 00:00:00:09)" in said.err
