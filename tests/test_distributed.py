"""Many processes: DDP on the CPU (gloo) and Slurm job arrays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BATCH = 2
STEPS = 4


def _fit_command() -> list[str]:
    # The console script, as a user types it: Lightning then restarts it by path.
    script = Path(sys.executable).with_name("ablation")
    return [str(script), "fit"] if script.exists() else [sys.executable, "-m", "ablation", "fit"]


@pytest.fixture(scope="module")
def ddp_run(toy_root, tmp_path_factory):
    """Two CPU ranks train the demo config under DDP for a few steps, validating after
    every step; returns the run's outputs and each rank's probe record."""
    tmp = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "ABLATION_CACHE": str(tmp / "cache"),  # empty: the run builds its cache
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        *_fit_command(),
        "--config=sweeps/demo_base.yaml",
        "--cell=1d-depth2",
        "--model.filters=4",
        f"--data.root={toy_root}",
        f"--data.batch_size={BATCH}",
        f"--run.dir={tmp / 'runs'}",
        "--run.val_every_seconds=0.000001",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        f"--trainer.max_steps={STEPS}",
        "--trainer.callbacks=ddp_probe.RankProbe",
        f"--trainer.callbacks.out={tmp / 'probe'}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    seconds = time.perf_counter() - start
    print(f"DDP run of {STEPS} steps on 2 CPU ranks: {seconds:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return tmp / "runs", ranks


def test_ddp_writes_one_run_that_separate_loads(ddp_run, toy_root, tmp_path):
    from ablation.checkpoint import load_net
    from ablation.separate import separate_file

    runs, _ = ddp_run
    summaries = list(runs.rglob("summary.json"))
    checkpoints = list(runs.rglob("last.ckpt"))
    assert len(summaries) == 1 and len(checkpoints) == 1, (summaries, checkpoints)
    assert len(list(runs.rglob("metrics.csv"))) == 1
    assert len(list(runs.rglob("offline-run-*"))) == 1  # one W&B run, from rank 0
    summary = json.loads(summaries[0].read_text())
    assert summary["steps"] == STEPS
    assert summary["fairness"]["validations"] == STEPS
    assert summary["last_val_sdr"] is not None  # val/sdr, synced over both ranks
    # validations run mid-epoch on the budget's clock: the best is judged at each one
    assert summary["best_val_sdr"] is not None and Path(summary["best_checkpoint"]).is_file()
    assert load_net(checkpoints[0]).sources
    mixture = next(toy_root.glob("test/*/mixture.wav"))
    stems = separate_file(checkpoints[0], mixture, tmp_path / "sep", None, 0.25, 2, "cpu")
    assert all(path.is_file() for path in stems.values())


def test_ddp_ranks_train_on_their_own_part_of_the_stream(ddp_run):
    _, ranks = ddp_run
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world"] for r in ranks} == {2}
    for rank in ranks:
        # StreamSampler's interleaving: batch k of rank r holds (2k + r) * B ... + B - 1
        expected = [
            list(range((2 * k + rank["rank"]) * BATCH, (2 * k + rank["rank"] + 1) * BATCH))
            for k in range(STEPS)
        ]
        assert rank["positions"] == expected
    # different items, so different augmented batches (draws follow the position)
    assert not set(ranks[0]["digests"]) & set(ranks[1]["digests"])


def test_ddp_cache_once_and_one_budget_for_all_ranks(ddp_run):
    runs, ranks = ddp_run
    assert ranks[0]["decoded"] > 0 and ranks[1]["decoded"] == 0  # rank 0 built, rank 1 read
    summary = json.loads(next(runs.rglob("summary.json")).read_text())
    assert ranks[0]["train_seconds"] == ranks[1]["train_seconds"]
    assert ranks[0]["train_seconds"] == summary["fairness"]["train_seconds"]
    assert {r["global_step"] for r in ranks} == {STEPS}
    assert {r["validations"] for r in ranks} == {STEPS}


def test_budget_takes_logging_inside_a_validation_out_once():
    """Lightning logs validation metrics before on_validation_end; counting that time
    twice moved the budget's clock backwards and skipped due validations (seen under
    DDP, where rank 0 logs and the steps are short)."""
    from types import SimpleNamespace

    import torch

    from lightning_modules.budget import TrainingBudget

    now = [0.0]
    budget = TrainingBudget(100, val_every_seconds=1, clock=lambda: now[0])
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn="fit"),
        sanity_checking=False,
        should_stop=False,
        world_size=1,
        strategy=SimpleNamespace(broadcast=lambda value: value),
    )
    batch = torch.zeros(2, 4, 2, 8)
    budget.on_train_batch_start(trainer, None, batch, 0)
    now[0] += 1.0  # one training step
    budget.on_train_batch_end(trainer, None, None, batch, 0)
    budget.on_validation_start(trainer, None)
    now[0] += 5.0  # validation, 3 s of which log its metrics
    budget.exclude("logging", 3.0)
    budget.on_validation_end(trainer, None)
    budget.on_train_batch_start(trainer, None, batch, 1)
    now[0] += 1.0
    budget.on_train_batch_end(trainer, None, None, batch, 1)
    assert budget.train_seconds == 2.0 and budget.excluded_seconds == 5.0
    assert budget.excluded["validation"] == 2.0 and budget._validate_now


# ---- Slurm job arrays --------------------------------------------------------------
DEMO = REPO / "sweeps" / "demo.yaml"
SLURM_OPTIONS = [
    "--partition=gpu",
    "--account=lab",
    "--gpus-per-task=1",
    "--cpus-per-task=4",
    "--mem=16G",
    "--time=00:10:00",
    "--max-parallel=2",
    "--sbatch=--qos=short",
]


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """An ``sbatch`` on PATH that records its arguments and answers a job id."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch-calls"
    bin_dir.mkdir()
    script = bin_dir / "sbatch"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "4242;cluster"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("WANDB_MODE", "offline")
    return calls


def _sweep(*argv: str) -> None:
    from ablation.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["sweep", *argv])
    assert exit_.value.code in (0, None), exit_.value.code


def _sbatch_lines(script: Path) -> list[str]:
    return [line for line in script.read_text().splitlines() if line.startswith("#SBATCH")]


def test_slurm_dry_run_writes_the_offline_array_and_submits_nothing(fake_sbatch, tmp_path):
    runs = tmp_path / "runs"
    _sweep(str(DEMO), "--slurm", "--dry-run", "--offline", f"--runs-dir={runs}", *SLURM_OPTIONS)
    script = runs / "demo" / "slurm" / "demo-offline.sbatch"
    lines = _sbatch_lines(script)
    for line in [
        "--array=0-3%2",  # one task per cell of the demo grid
        "--signal=SIGUSR1@90",
        "--requeue",
        "--open-mode=append",
        "--partition=gpu",
        "--account=lab",
        "--gpus-per-node=1",
        "--cpus-per-task=4",
        "--mem=16G",
        "--time=00:10:00",
        "--qos=short",
        f"--chdir={REPO}",
        f"--output={runs.resolve()}/demo/slurm/%x-%A_%a.out",
    ]:
        assert f"#SBATCH {line}" in lines, (line, lines)
    run = [line for line in script.read_text().splitlines() if line.startswith("srun ")]
    assert len(run) == 1
    assert f"-m ablation sweep {DEMO} --offline --only-index $SLURM_ARRAY_TASK_ID" in run[0]
    assert f"--runs-dir={runs.resolve()}" in run[0]
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert not fake_sbatch.exists()


def test_slurm_online_array_runs_one_agent_per_task(fake_sbatch, tmp_path):
    from ablation.slurm import SlurmOptions
    from ablation.sweep import submit_slurm

    script, job = submit_slurm(
        DEMO, SlurmOptions(), tmp_path, offline=False, write_only=True, sweep_id="me/proj/abc1"
    )
    assert job is None and script.name == "demo-online.sbatch"
    assert "#SBATCH --array=0-3" in _sbatch_lines(script)
    assert "#SBATCH --signal=SIGUSR1@90" in _sbatch_lines(script)
    last = script.read_text().splitlines()[-1]
    assert last.endswith(
        f"-m ablation sweep --agent-task me/proj/abc1 --task-records={script.parent}"
    )
    assert not fake_sbatch.exists()


def test_slurm_submits_once_and_says_how_to_watch(fake_sbatch, toy_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    _sweep(str(DEMO), "--slurm", "--offline", f"--runs-dir={runs}", f"--root={toy_root}")
    script = runs / "demo" / "slurm" / "demo-offline.sbatch"
    assert fake_sbatch.read_text().splitlines() == [f"--parsable {script.resolve()}"]
    out = capsys.readouterr().out
    assert "squeue -j 4242" in out and "sacct -j 4242" in out and "scancel 4242" in out


def test_slurm_multi_node_tasks_train_one_ddp_run(fake_sbatch, tmp_path):
    runs = tmp_path / "runs"
    _sweep(str(DEMO), "--slurm", "--dry-run", "--offline", f"--runs-dir={runs}",
           "--nodes=2", "--gpus-per-task=4")  # fmt: skip
    script = runs / "demo" / "slurm" / "demo-offline.sbatch"
    lines = _sbatch_lines(script)
    assert {"#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4"} <= set(lines)
    assert "--fit-arg=--trainer.num_nodes=2 --fit-arg=--trainer.devices=4" in script.read_text()


def test_only_index_trains_exactly_that_cell(toy_root, tmp_path):
    from ablation.runs import is_done
    from ablation.sweep import cell_run_dir, grid, load_sweep

    runs = tmp_path / "runs"
    env = {**os.environ, "WANDB_MODE": "offline", "ABLATION_CACHE": str(tmp_path / "cache")}
    # a step budget: the demo's calibration table holds batches of 8, not 2
    tiny = ["--run.budget_unit=steps", "--run.budget_steps=2", "--model.filters=4",
            "--data.batch_size=2"]  # fmt: skip
    command = [sys.executable, "-m", "ablation", "sweep", str(DEMO), "--offline",
               f"--runs-dir={runs}", f"--root={toy_root}"]  # fmt: skip
    command += [f"--fit-arg={arg}" for arg in tiny]
    done = subprocess.run(
        [*command, "--only-index", "2"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    cells = grid(load_sweep(DEMO))
    expected = cell_run_dir(runs, "demo", cells[2])
    assert is_done(expected)
    assert sorted(p.name for p in (runs / "demo").iterdir()) == [expected.name]
    assert f"[3/4] {expected.name}" in done.stdout
    # out of range: one line that says what the grid holds
    wrong = subprocess.run(
        [*command, "--only-index", "4"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "the grid has 4 cells" in wrong.stderr


def test_a_requeue_checkpoint_becomes_last_ckpt(ddp_run, tmp_path):
    import torch

    from ablation.checkpoint import checkpoint_step
    from lightning_modules.lightning_cli import adopt_requeue_checkpoint

    runs, _ = ddp_run
    source = next(runs.rglob("last.ckpt"))
    checkpoint = torch.load(source, weights_only=False)
    (tmp_path / "checkpoints").mkdir()

    def save(name: str, step: int) -> None:
        torch.save({**checkpoint, "global_step": step}, tmp_path / name)

    save("checkpoints/last.ckpt", 4)
    save("hpc_ckpt_1.ckpt", 6)
    save("hpc_ckpt_2.ckpt", 7)  # the signal came twice: the newest wins
    last = adopt_requeue_checkpoint(tmp_path)
    assert checkpoint_step(last) == 7 and not list(tmp_path.glob("hpc_ckpt_*"))
    # a validation after the signal wrote a newer last.ckpt: it stays
    save("hpc_ckpt_3.ckpt", 5)
    assert checkpoint_step(adopt_requeue_checkpoint(tmp_path)) == 7
    assert not list(tmp_path.glob("hpc_ckpt_*"))
    assert adopt_requeue_checkpoint(tmp_path) is None


# ---- a real Slurm (make test-slurm) ---------------------------------------------------
SLURM_SCRIPTS = TESTS / "slurm"


@pytest.fixture(scope="module")
def real_slurm(tmp_path_factory):
    """A single-node Slurm brought up by tests/slurm/start.sh, torn down after."""
    if os.geteuid() != 0:
        pytest.skip("bringing up slurmd needs root: run make test-slurm as root")
    state = tmp_path_factory.mktemp("slurm-state")
    env = {**os.environ, "SLURM_TEST_STATE": str(state)}
    started = subprocess.run(
        ["bash", str(SLURM_SCRIPTS / "start.sh")], env=env, capture_output=True, text=True
    )
    try:
        assert started.returncode == 0, f"Slurm did not come up: {started.stderr[-2000:]}"
        yield {**env, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop.sh")], env=env)


def _tasks(job: str, env: dict) -> dict[int, dict[str, str]]:
    """Array task -> scontrol's fields (JobState, Restarts, RunTime, ...)."""
    shown = subprocess.run(
        ["scontrol", "-o", "show", "job", job], env=env, capture_output=True, text=True
    ).stdout
    tasks = {}
    for line in shown.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if fields.get("ArrayTaskId", "").isdigit():
            tasks[int(fields["ArrayTaskId"])] = fields
    return tasks


def _wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(1)
    raise AssertionError(f"waited {seconds:.0f} s for {what}")


@pytest.mark.slow
def test_real_slurm_array_finishes_the_demo_and_requeues_a_signalled_task(
    real_slurm, toy_root, tmp_path
):
    from ablation.sweep import cell_run_dir, grid, load_sweep

    env = {**real_slurm, "WANDB_MODE": "offline", "ABLATION_CACHE": str(tmp_path / "cache")}
    runs, budget = tmp_path / "runs", 20
    tiny = [f"--trainer.max_time=00:00:00:{budget}", "--run.budget_unit=time",
            "--model.filters=4", "--data.batch_size=4"]  # fmt: skip
    start = time.monotonic()
    submitted = subprocess.run(
        [sys.executable, "-m", "ablation", "sweep", str(DEMO), "--slurm", "--offline",
         f"--runs-dir={runs}", f"--root={toy_root}", "--cpus-per-task=1",
         *[f"--fit-arg={arg}" for arg in tiny]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job = submitted.stdout.split("submitted job array ")[1].split()[0]
    first = cell_run_dir(runs, "demo", grid(load_sweep(DEMO))[0])

    # Preempt task 0 once it has a last.ckpt (its first validation): Slurm's warning
    # signal goes to the job steps, as `#SBATCH --signal=SIGUSR1@90` sends it.
    _wait(lambda: (first / "checkpoints" / "last.ckpt").exists(), 300, "task 0's last.ckpt")
    time.sleep(2)
    signalled = time.monotonic() - start
    subprocess.run(["scancel", "--signal=USR1", f"{job}_0"], env=env)
    _wait(lambda: _tasks(job, env).get(0, {}).get("Restarts") == "1", 60, "task 0 requeued")

    def all_ended():
        tasks = _tasks(job, env)
        states = {t.get("JobState") for t in tasks.values()}
        return tasks if len(tasks) == 4 and states <= {"COMPLETED", "FAILED"} else None

    tasks = _wait(all_ended, 600, "the four tasks to end")
    seconds = time.monotonic() - start
    for index, fields in sorted(tasks.items()):
        print(f"{job}_{index}", *(f"{k}={fields.get(k)}" for k in ("JobState", "Restarts",
              "RunTime", "ExitCode")))  # fmt: skip
    # --duplicates lists the requeued attempt of task 0 too
    accounting = subprocess.run(
        ["sacct", "-j", job, "--duplicates", "-X", "--format=JobID,State,Elapsed,Start,End"],
        env=env, capture_output=True, text=True,
    ).stdout  # fmt: skip
    print(accounting)
    print(
        f"array of 4 submitted, task 0 signalled at {signalled:.0f} s, all ended at {seconds:.0f} s"
    )

    assert {t["JobState"] for t in tasks.values()} == {"COMPLETED"}
    attempts = [line.split()[1] for line in accounting.splitlines() if f" {job}_0 " in f" {line}"]
    assert attempts.count("REQUEUED") == 1 and attempts[-1] == "COMPLETED", accounting
    summaries = sorted(runs.glob("demo/*/summary.json"))
    assert len(summaries) == 4
    log = next(runs.glob(f"demo/slurm/demo-{job}_0.out")).read_text()
    assert "Handling auto-requeue signal" in log and f"Requeued SLURM job: {job}_0" in log
    assert f"{first}: resuming from {first}/checkpoints/last.ckpt" in log
    assert not list(first.glob("hpc_ckpt_*"))
    for summary in summaries:
        fairness = json.loads(summary.read_text())["fairness"]
        # the budget counted once: the signalled run too ends within one step of it
        assert budget <= fairness["train_seconds"] < budget + fairness["max_step_seconds"]


def test_a_requeued_online_task_resumes_its_run_instead_of_taking_a_new_cell(toy_root, tmp_path):
    """A fake `wandb agent` starts a real run; the task is then "requeued" with the run
    unfinished (summary.json gone, last.ckpt kept): it resumes that run, takes no new cell."""
    calls, records, bin_dir = tmp_path / "calls", tmp_path / "slurm", tmp_path / "bin"
    bin_dir.mkdir()
    fit = [sys.executable, "-m", "ablation", "fit", "--config", "sweeps/demo_base.yaml",
           "--cell=1d-depth2", "--model.filters=4", f"--run.dir={tmp_path / 'runs'}",
           "--run.sweep=demo", f"--data.root={toy_root}",
           "--trainer.max_time=00:00:00:03"]  # fmt: skip
    agent = bin_dir / "wandb"  # as wandb's agent does, the run gets the sweep and a run id
    agent.write_text(
        f'#!/bin/bash\necho "$@" >> {calls}\nexport WANDB_SWEEP_ID=abc1 WANDB_RUN_ID=r77x\n'
        f"exec {' '.join(fit)}\n"
    )
    agent.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", WANDB_MODE="offline",
               SLURM_ARRAY_JOB_ID="77", SLURM_ARRAY_TASK_ID="2")  # fmt: skip
    task = [sys.executable, "-m", "ablation", "sweep", "--agent-task", "me/proj/abc1",
            f"--task-records={records}"]  # fmt: skip

    def run_task() -> subprocess.CompletedProcess:
        done = subprocess.run(task, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    run_task()
    record = json.loads((records / "task-77-2.json").read_text())
    run_dir = Path(record["run_dir"])
    assert record["command"][3:] == fit[3:] and (run_dir / "summary.json").exists()
    assert calls.read_text().splitlines() == ["agent --count 1 me/proj/abc1"]
    (run_dir / "summary.json").unlink()  # killed after its last.ckpt, before it finished
    again = run_task()
    assert "requeued: resuming" in again.stdout and f"resuming from {run_dir}" in again.stdout
    assert (run_dir / "summary.json").exists()
    assert json.loads((run_dir / "wandb_run.json").read_text())["id"] == "r77x"  # the same run
    assert "nothing to do" in run_task().stdout
    assert len(calls.read_text().splitlines()) == 1  # the agent never took a second cell
