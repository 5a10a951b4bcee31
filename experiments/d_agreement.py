"""Does D's own attribute classifier accept G's edits that the fixed classifier rejects?

    python experiments/d_agreement.py runs/cpu-budget/attgan-base-s0 [RUN ...] [--n 100]

For the first N validation faces of each run, every attribute is flipped as camfast-eval
flips it; the edit counts as successful for D when D's attribute logit agrees with the
target, and for the fixed classifier (runs/<exp>/classifier.pt, or --classifier) likewise.
When D accepts nearly every edit, G gets no more signal to strengthen the edits: what
limits edit accuracy is then D's classifier, not the number of iterations.
"""
import argparse
import os

import torch

from camfast.evaluation import classifier as C
from camfast.evaluation import metrics as M
from camfast.evaluation.evaluate import load_run, open_test_data
from camfast.evaluation.translate import GMode, translate_all
from camfast.training.conditions import Conditions


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--classifier", help="default: classifier.pt next to the run folders")
    p.add_argument("--n", type=int, default=100, help="validation faces (default 100)")
    args = p.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        cfg, G, D, _ = load_run(run)
        _, ds = open_test_data(cfg, None, "val", progress=False)
        clf, _ = C.load(args.classifier or os.path.join(os.path.dirname(os.path.abspath(run)), "classifier.pt"))
        n = min(args.n, len(ds))
        x = torch.stack([ds[i][0] for i in range(n)])
        a = torch.stack([ds[i][1] for i in range(n)])
        cond = Conditions(cfg["backbone"], cfg["thres_int"], cfg["b_distribution"])
        D.eval()
        with torch.no_grad(), GMode(G, cfg["test_g_mode"]) as g:
            _, fakes, targets = translate_all(g, cond, x, a, ds.attrs, cfg["test_int"])
            d_real = ((D(x)[1] > 0).float() == a).float().mean().item()
            by_d = [M.edit_accuracy(D(f.clamp(-1, 1))[1], b, k).mean().item() for k, (f, b) in enumerate(zip(fakes, targets))]
            by_c = [M.edit_accuracy(clf(f.clamp(-1, 1)), b, k).mean().item() for k, (f, b) in enumerate(zip(fakes, targets))]
        k = len(by_d)
        print(f"{os.path.basename(run.rstrip('/'))}: D's classifier on real val faces {d_real:.3f}; edits accepted by D "
              f"{sum(by_d) / k:.3f}, by the fixed classifier {sum(by_c) / k:.3f}")
        print("  per attribute (D / fixed): " + ", ".join(f"{a_} {d:.2f}/{c:.2f}" for a_, d, c in zip(ds.attrs, by_d, by_c)))


if __name__ == "__main__":
    main()
