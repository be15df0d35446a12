"""Worker processes: a parallel run writes the files of a serial one."""

from __future__ import annotations

from evaluation_helpers import evaluate_pair


def test_parallel_run_writes_the_files_of_the_serial_run(mixture_eval, toy, tmp_path):
    out = evaluate_pair(toy, tmp_path / "p", jobs=2)
    for path in sorted((mixture_eval / "test").glob("*.json")):
        assert (out / "test" / path.name).read_text() == path.read_text()
    for name in ["results.csv", "tracks.csv", "summary.json"]:
        assert (out / name).read_text() == (mixture_eval / name).read_text()


def test_default_workers_are_as_many_as_the_memory_holds_on_the_longest_track():
    from ablation.evaluation.pool import default_jobs

    # 50 MUSDB18 tracks on a 32-core node with 64 GB free: a 10-minute track takes a
    # worker about 13 GB, so one per core would ask for 400 GB
    assert default_jobs(600, cores=32, available=64 * 10**9) == 4
    assert default_jobs(3, cores=2, available=64 * 10**9) == 2  # short tracks: every core
    assert default_jobs(600, cores=8, available=10**9) == 1  # never fewer than one
    assert default_jobs(600, cores=8, available=None) == 8  # unknown memory: every core
