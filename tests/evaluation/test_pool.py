"""Worker processes: a parallel run writes the files of a serial one."""

from __future__ import annotations

from evaluation_helpers import evaluate_pair


def test_parallel_run_writes_the_files_of_the_serial_run(mixture_eval, toy, tmp_path):
    out = evaluate_pair(toy, tmp_path / "p", jobs=2)
    for path in sorted((mixture_eval / "test").glob("*.json")):
        assert (out / "test" / path.name).read_text() == path.read_text()
    for name in ["results.csv", "tracks.csv", "summary.json"]:
        assert (out / name).read_text() == (mixture_eval / name).read_text()
