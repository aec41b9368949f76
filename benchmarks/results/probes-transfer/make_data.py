"""Transfer-learning probe data and its pretrained network, written under ``runs/transfer/`` (run from the repository
root with the project's Python).

* ``source.npz``: Fashion-MNIST classes 0-4 (1,200 training images each): what the network is pretrained on.
* ``target.npz``: Fashion-MNIST classes 5-9 as classes 0-4 (400 training and 200 test images each): what the user
  fine-tunes on and asks about.
* ``pretrained.safetensors``: the demo ConvNet (width 32, 5 outputs) trained 5 epochs on ``source.npz`` with ddm's
  loop; ``pretrained-resnet-bn.safetensors``: ddm's ResNet with batch norm (width 16, 2 stages), 3 epochs with
  momentum 0.9; ``pretrained_models.py`` (beside this file) builds them for ``ddm run --model``.

The data are drawn with seed 141 (not used before); the pretraining is seeded by ``model.seed`` 0 and
``train.seed`` 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import ddm
from ddm.config import TrainConfig
from ddm.data.idx import load_idx_dataset
from ddm.train.loop import accuracy, train_model
from ddm.workspace import save_tensors


def main() -> None:
    rng = np.random.default_rng(141)
    folder = Path("runs/transfer")
    folder.mkdir(parents=True, exist_ok=True)
    fm = load_idx_dataset("fashion-mnist", None)
    x, y, xt, yt = fm.train.x.numpy(), fm.train.y.numpy(), fm.test.x.numpy(), fm.test.y.numpy()

    def take(xs: np.ndarray, ys: np.ndarray, classes: range, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([rng.choice(np.flatnonzero(ys == c), per_class, replace=False) for c in classes])
        return xs[idx].astype(np.float32), (ys[idx] - classes.start).astype(np.int64)

    xs, ys = take(x, y, range(0, 5), 1200)
    np.savez(folder / "source.npz", X=xs, y=ys)
    xf, yf = take(x, y, range(5, 10), 400)
    xft, yft = take(xt, yt, range(5, 10), 200)
    names = np.array(["sandal", "shirt", "sneaker", "bag", "ankle boot"])
    np.savez(folder / "target.npz", X=xf, y=yf, X_test=xft, y_test=yft, class_names=names)
    source = ddm.data.from_arrays(xs, ys, name="source", test_fraction=0.1)
    torch.manual_seed(0)
    model = ddm.models.build("convnet", source, width=32)
    train_model(model, source.train, TrainConfig(epochs=5, lr=0.05, batch_size=64, seed=0))
    save_tensors(folder / "pretrained.safetensors", model.state_dict())
    print(f"source test accuracy {accuracy(model.eval(), source.test):.3f}; target: {len(yf)} train, {len(yft)} test")
    torch.manual_seed(0)
    resnet = ddm.models.build("resnet", source, width=16, depth=2, norm="batchnorm")
    train_model(resnet, source.train, TrainConfig(epochs=3, lr=0.05, momentum=0.9, batch_size=64, seed=0))
    save_tensors(folder / "pretrained-resnet-bn.safetensors", resnet.state_dict())
    print(f"batch-norm ResNet: source test accuracy {accuracy(resnet.eval(), source.test):.3f}")


if __name__ == "__main__":
    main()
