"""Docs and code agree: every name the docs give exists, every public name is documented, the
blocks marked runnable run, excerpts match their source, and links stay inside the repository."""
import glob
import importlib
import os
import re

import pytest
import torch

import camfast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API = os.path.join(ROOT, "docs", "api.md")
DOCS = [os.path.join(ROOT, f) for f in ("README.md", "CONTRIBUTING.md")] + sorted(glob.glob(f"{ROOT}/docs/*.md"))
RUNNABLE = [os.path.join(ROOT, "README.md"), API]

BLOCK = re.compile(r"^<!-- (runnable|excerpt: (\S+)) -->\n```python\n(.*?)^```", re.S | re.M)
NAME = re.compile(r"(?<![\w.])camfast\.[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
OP = re.compile(r"torch\.ops\.camfast\.([A-Za-z_]\w*)")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rel(path):
    return os.path.relpath(path, ROOT)


def resolve(dotted):
    """Import the longest module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:
            if e.name is not None and not ".".join(parts[:i]).startswith(e.name):
                raise  # the module exists but needs something missing here
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_public_name_is_documented():
    text = read(API)
    missing = [n for n in camfast.__all__ if f"`camfast.{n}`" not in text]
    assert not missing, f"docs/api.md has no section for {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_name_the_docs_give_exists(doc):
    text = read(doc)
    for name in sorted(set(NAME.findall(text))):
        if name.split(".")[1] in ("kernels", "triton_ops"):
            pytest.importorskip("triton")
        if name == "camfast._C" and not camfast.build_info()["extension_loaded"]:
            continue
        try:
            resolve(name)
        except (ImportError, AttributeError) as e:
            pytest.fail(f"{rel(doc)} names {name}, which does not exist: {e}")
    ops = sorted(set(OP.findall(text)))
    if any(op.startswith("triton_") for op in ops):
        pytest.importorskip("triton")
        importlib.import_module("camfast.triton_ops")
    for op in ops:
        if op.startswith("triton_") or camfast.build_info()["extension_loaded"]:
            assert hasattr(torch.ops.camfast, op), f"{rel(doc)} names torch.ops.camfast.{op}, which is not registered"


def test_api_reference_documents_every_op():
    text = read(API)
    for op in ("cam_mask", "cam_mask_backward", "masked_l1", "masked_l1_backward"):
        assert f"torch.ops.camfast.{op}(" in text and f"torch.ops.camfast.triton_{op}" in text
    for cls, methods in ((camfast.CAMConsistency, ("capture", "forward", "d_loss", "g_loss", "mask")),
                         (camfast.GradCAM, ("gradients",))):
        for m in methods:
            assert hasattr(cls, m) and f"`camfast.{cls.__name__}.{m}`" in text


@pytest.fixture
def quiet_sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("doc", RUNNABLE, ids=rel)
def test_runnable_blocks_run(doc, quiet_sandbox):
    """The blocks of one file run in order in one namespace, as a reader would paste them."""
    blocks = [(m.start(), m.group(3)) for m in BLOCK.finditer(read(doc)) if m.group(1) == "runnable"]
    assert blocks, f"{rel(doc)} has no block marked <!-- runnable -->"
    ns = {"__name__": "__docs__"}
    text = read(doc)
    for start, code in blocks:
        line = text.count("\n", 0, start) + 3
        try:
            exec(compile(code, f"{rel(doc)}:{line}", "exec"), ns)
        except Exception as e:
            raise AssertionError(f"the runnable block at {rel(doc)} line {line} failed: {type(e).__name__}: {e}") from e


def _code_lines(text):
    """Lines that carry code: no blanks, no comment-only lines, no elisions, trailing comments cut."""
    out = []
    for line in text.splitlines():
        code = re.sub(r"\s+#.*$", "", line).strip()
        if code and not code.startswith("#") and "..." not in code:
            out.append(code)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_excerpts_match_their_source(doc):
    """A block marked <!-- excerpt: PATH --> shows lines of PATH, in PATH's order."""
    for m in BLOCK.finditer(read(doc)):
        if m.group(2) is None:
            continue
        source = _code_lines(read(os.path.join(ROOT, m.group(2))))
        pos = 0
        for line in _code_lines(m.group(3)):
            assert line in source[pos:], f"{rel(doc)}: excerpt line {line!r} is not in {m.group(2)} (in order)"
            pos = source.index(line, pos) + 1


def test_links_and_citations_stay_inside_the_repository():
    files = DOCS + sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
    # Relative links stay inside the repository; those of the reference docs must exist
    # (results pages may link figures an experiment has yet to write).
    must_exist = {os.path.join(ROOT, "README.md"), API, os.path.join(ROOT, "docs", "method.md")}
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", read(doc)):
            path = target.split("#")[0]
            if not path or re.match(r"^[a-z]+:", path):
                continue
            full = os.path.normpath(os.path.join(os.path.dirname(doc), path))
            assert not os.path.isabs(path) and full.startswith(ROOT + os.sep), f"{rel(doc)} links outside: {target}"
            assert doc not in must_exist or os.path.exists(full), f"{rel(doc)} links to missing {target}"
    design = "DESIGN" + ".md"  # no document of that name is part of the project
    for pattern in ("camfast/**/*.py", "examples/*.py", "benchmarks/*", "docs/*.md", "*.md", "tests/*.py"):
        files += glob.glob(os.path.join(ROOT, pattern), recursive=True)
    cited = [rel(f) for f in sorted(set(files)) if os.path.isfile(f) and design in read(f)]
    assert not cited, f"{design} is cited by {cited}, but it is not in the repository"
