"""The scripts in examples/ run, at tiny sizes, as a user would run them."""
import os
import runpy
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


@pytest.fixture(autouse=True)
def example_env(monkeypatch):
    """examples/ on sys.path as ``python examples/x.py`` has it; one thread (tiny tensors)."""
    monkeypatch.syspath_prepend(EXAMPLES)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    sys.modules.pop("train_minimal", None)


def run(name, *args, capsys):
    capsys.readouterr()
    argv = sys.argv
    sys.argv = [os.path.join(EXAMPLES, name), *args]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.argv = argv
    return capsys.readouterr().out


def test_train_minimal(capsys):
    out = run("train_minimal.py", "--steps", "3", capsys=capsys)
    assert "step    3" in out and out.rstrip().splitlines()[-1].startswith("done: D's mask covers")


def test_lower_level_gives_the_same_run(capsys):
    """GradCAM + cam_consistency_loss by hand computes what CAMConsistency does: the same losses."""
    pieces = run("lower_level.py", "--steps", "3", capsys=capsys)
    obj = run("train_minimal.py", "--steps", "3", capsys=capsys)
    assert pieces == obj


def test_compile_d_step(capsys):
    torch._dynamo.reset()
    try:
        # aot_eager: dynamo and AOTAutograd as inductor has them (graph breaks, the autograd
        # graph, double backward), without the C++ code generation that would take the time.
        out = run("compile_d_step.py", "--steps", "2", "--backend", "aot_eager", capsys=capsys)
    finally:
        torch._dynamo.reset()
    assert "compiled vs eager D step" in out and out.rstrip().endswith("done")
