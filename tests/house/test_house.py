"""The house's shape (issue 23): one direction of imports, every sweep YAML expanding to
what it expanded to before the command line was reshaped, and run folders of that time
still loading and resuming."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import test_resume_and_errors
import torch
from main_checkpoint import GOLDEN as MAIN_CHECKPOINT
from main_checkpoint import fit_arguments, layout
from sweep_expansion import GOLDEN as MAIN_SWEEPS
from sweep_expansion import expand_all

REPO = Path(__file__).resolve().parents[2]
fit_env = test_resume_and_errors.fit_env  # the toy CLI environment, shared
PACKAGES = ("ablation", "lightning_modules", "datamodules")
# the command's entry and what only it runs: the orchestration above the Lightning layer
ENTRY = {"ablation.cli", "ablation.__main__", "ablation.demo"}
TRAINING_STACK = ("lightning", "lightning_modules", "datamodules", "pytorch_lightning")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside a function."""
    found = set()
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def project_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
    modules = {module_name(p): p for p in files}
    graph = {}
    for name, path in modules.items():
        # a package's own __init__ is not an edge: importing a.b runs a/__init__ first
        targets = {t for t in imports(path) if t in modules and not name.startswith(t + ".")}
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_project_has_no_import_circle():
    assert cycles(project_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_the_command_entry():
    graph = project_graph()
    importers = {name for name, targets in graph.items() if "ablation.cli" in targets}
    assert importers <= {"ablation.__main__"}, importers


def test_the_library_imports_no_lightning():
    """Nets, losses, BSS Eval, tracks, separation, evaluation, report and the rest of
    ``ablation/`` work without the training stack; only the entry, the demo and the
    benchmarks (which train) reach it."""
    offenders = {}
    for path in sorted((REPO / "ablation").rglob("*.py")):
        name = module_name(path)
        if name in ENTRY or name.startswith("ablation.benchmarks"):
            continue
        bad = {t for t in imports(path) if t.split(".")[0] in TRAINING_STACK}
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_every_sweep_yaml_expands_to_the_configuration_it_had_before_the_reshaping():
    """Each cell of each sweep YAML, through the one parser and ``ablation fit``, gives
    the nets, data, training and run settings the main branch gave it (commit 2c04a71)."""
    before = json.loads(MAIN_SWEEPS.read_text())
    now = expand_all()
    assert sorted(now) == sorted(before)
    for sweep, cells in before.items():
        assert sorted(now[sweep]) == sorted(cells), sweep
        for cell, config in cells.items():
            assert now[sweep][cell] == config, f"{sweep} {cell}"


def test_a_run_folder_written_before_the_reshaping_loads_and_resumes(fit_env, tmp_path, capsys):
    """A 2-step run whose config.yaml, checkpoint hyper-parameters and callback states are
    those the main branch wrote (commit 2c04a71): the net loads from its checkpoint, and
    ``ablation fit`` with the same arguments resumes it to 4 steps."""
    from ablation.checkpoint import load_net
    from ablation.cli import main

    before = json.loads(MAIN_CHECKPOINT.read_text())
    runs, run = tmp_path / "runs", tmp_path / "runs" / "adhoc" / "run"
    main(fit_arguments(runs, fit_env, 2))
    assert layout(run, fit_env, runs)["callbacks"] == before["callbacks"]
    # the folder as main wrote it: its config and its checkpoint's hyper-parameters
    config = before["config.yaml"].replace("{root}", str(fit_env)).replace("{runs}", str(runs))
    (run / "config.yaml").write_text(config)
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert sorted(ckpt) == before["keys"]
    ckpt["hyper_parameters"] = before["hyper_parameters"]
    torch.save(ckpt, last)
    (run / "summary.json").unlink()  # killed after its last save

    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()}
    loaded = load_net(last).state_dict()
    assert loaded and all(torch.equal(v, weights[k]) for k, v in loaded.items())
    capsys.readouterr()
    main(fit_arguments(runs, fit_env, 4))
    assert f"resuming from {last}" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
