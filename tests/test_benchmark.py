"""camfast-bench's own arithmetic and its host-overhead mode, on tiny settings (speed is never
asserted: benchmarks/RESULTS.md)."""
import argparse

import torch

from camfast.benchmark import loss as bench


def test_bytes_floor_matches_the_documented_formula():
    cfg = bench.Config(2, (3, 8, 8), (5, 4, 4), 2, "fp32")
    img, feat = 2 * 3 * 8 * 8, 2 * 2 * 5 * 4 * 4
    assert bench.bytes_moved(cfg, "full") == 4 * (5 * img + 6 * feat)   # default wrt: fake, feats, grads
    assert bench.bytes_moved(cfg, "forward") == 4 * (2 * img + 2 * feat)
    assert bench.bytes_moved(cfg, "backward", wrt=("fake",)) == 4 * (3 * img + 2 * feat)


def test_host_mode_times_every_provider_in_every_mode(monkeypatch):
    monkeypatch.setattr(bench, "HOST_ROUNDS", 4)
    provs = ["eager"] + (["cpu"] if "cpu" in bench.available_providers(torch.device("cpu")) else [])
    rows = bench.run_host(argparse.Namespace(wrt=list(bench.DEFAULT_WRT)), torch.device("cpu"), provs)
    assert [r["provider"] for r in rows] == provs
    for r in rows:
        assert r["forward_p20_us"] <= r["forward_us"] <= r["forward_p80_us"]
        assert r["full_us"] > 0 and r["forward_alone_us"] > 0 and r["full_alone_us"] > 0 and r["cuda_graph"] == "-"
    assert rows[0]["full_vs_eager"] == 1.0 and rows[0]["full_alone_vs_eager"] == 1.0
    assert "| eager |" in bench.host_markdown(rows)


def test_host_only_writes_its_table(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "HOST_ROUNDS", 2)
    assert bench.main(["--host-only", "--provider", "eager", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "bench_host.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("eager,") and "full_alone_us" in lines[0]
    assert "| eager |" in capsys.readouterr().out


def test_last_level_cache_reads_every_index_folder(tmp_path):
    from camfast.benchmark import harness

    # sysfs lists files such as uevent beside the index folders; an entry without a size
    # must not end the search (it once hid a 480 MiB L3 behind the 32 MiB default).
    (tmp_path / "uevent").write_text("")
    for name, size in [("index0", "48K"), ("index2", "2048K"), ("index3", "491520K"), ("index9", "")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "size").write_text(size + "\n")
    (tmp_path / "index1").mkdir()   # no size file
    assert harness.last_level_cache(torch.device("cpu"), str(tmp_path)) == 480 * harness.MiB
    assert harness.last_level_cache(torch.device("cpu"), str(tmp_path / "missing")) == 32 * harness.MiB
    assert [harness.parse_cache_size(s) for s in ("48K", "32M", "1G", "512")] == [48 << 10, 32 << 20, 1 << 30, 512]
