"""Does a nearest-neighbour classifier on the pixels say what exact retraining loses when groups go? (a diagnostic)

For every stored 4-group unlearning draw of the report matrix (``matrix-gradients-groups-*.json``, seed 0: the
groups, the exact retrain's and DDM's test accuracy), the groups are rebuilt (k-means on the pixels within each
class, the configuration's seed) and a 5-nearest-neighbour classifier on the raw pixels is scored on the test split
with all the training data and without the draw's groups. Its change is a retrain-free, model-free reading of how
much of the test split leaned on the removed samples alone. Printed beside exact retraining's change (the target's
data order, and the mean of three orders where stored) and DDM's, with their correlation. No training.

    python benchmarks/unlearn_knn_proxy.py --out benchmarks/results/unlearn-knn-proxy
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_report  # noqa: E402
from matrix import CONFIGS, make_config  # noqa: E402

from ddm.cluster import make_groups  # noqa: E402

FILES = ["matrix-gradients-groups-a.json", "matrix-gradients-groups-b.json"]


def draws(results: Path) -> list[dict[str, Any]]:
    out = []
    for f in FILES:
        for r in json.loads((results / f).read_text()):
            if "unlearning" not in r:
                continue
            cfg, data = make_config(CONFIGS[r["config"]][0], int(r["seed"]), [])
            groups = make_groups(data.train, cfg.cluster, int(data.num_classes))
            a, b = data.train.x.flatten(1).numpy(), data.test.x.flatten(1).numpy()
            ytr, yte = data.train.y.numpy(), data.test.y.numpy()
            full = KNeighborsClassifier(5).fit(a, ytr).score(b, yte)
            target = r["unlearning"]["target_test_acc"]
            for d in r["unlearning"]["groups4"]:
                keep = np.ones(len(ytr), dtype=bool)
                for k in d["groups"]:
                    keep[groups.members(k).numpy()] = False
                kept = KNeighborsClassifier(5).fit(a[keep], ytr[keep]).score(b, yte)
                orders = [d["exact"], *d.get("exact_other_orders", [])]
                out.append({"config": r["config"], "seed": r["seed"], "groups": d["groups"],
                            "knn": 100 * (kept - full), "exact": 100 * (d["exact"] - target),
                            "exact_orders": 100 * (float(np.mean(orders)) - target), "ddm": 100 * (d["ddm"] - target)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--out", default="benchmarks/results/unlearn-knn-proxy")
    args = p.parse_args()
    rows = draws(Path(args.results))
    knn, exact, ddm_ = (np.array([r[k] for r in rows]) for k in ("knn", "exact", "ddm"))
    miss = np.abs(ddm_ - exact) > 3
    lines = ["# A pixel nearest-neighbour classifier against exact retraining's loss (4-group removals)", "",
             f"Command: `python benchmarks/unlearn_knn_proxy.py {' '.join(sys.argv[1:])}` (no training; the draws "
             f"of {', '.join(FILES)})", "",
             "Test-accuracy change in points from the target (kNN: from the kNN on all the training data).", "",
             "| configuration | seed | groups | 5-NN on pixels | exact (target's order) | exact (mean of orders) "
             "| DDM | DDM misses 3 points |", "|---|---|---|---|---|---|---|---|"]
    for r, m in zip(rows, miss, strict=True):
        lines.append(f"| {r['config']} | {r['seed']} | {r['groups']} | {r['knn']:+.1f} | {r['exact']:+.1f} | "
                     f"{r['exact_orders']:+.1f} | {r['ddm']:+.1f} | {'yes' if m else ''} |")
    lines += ["", f"Correlation of the kNN's change with exact retraining's: {np.corrcoef(knn, exact)[0, 1]:+.2f}; "
              f"with DDM's gap to exact retraining (exact − DDM): {np.corrcoef(knn, exact - ddm_)[0, 1]:+.2f}. "
              f"Draws where the kNN loses 2 points or more: {int((knn <= -2).sum())} of {len(rows)}, holding "
              f"{int((miss & (knn <= -2)).sum())} of DDM's {int(miss.sum())} misses."]
    write_report(args.out, "\n".join(lines) + "\n", rows)


if __name__ == "__main__":
    main()
