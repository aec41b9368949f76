"""Tiny ImageNet read from files written in the official tiny-imagenet-200 layout (JPEG, text files)."""

import json
import sys

import numpy as np
import pytest
import torch

import ddm
from ddm.cli.main import main
from ddm.data.dataset import stratified_subset
from ddm.data.tinyimagenet import load_tinyimagenet
from ddm.exceptions import DataError, MissingDependencyError

Image = pytest.importorskip("PIL.Image")

WNIDS = ["n02124075", "n01443537", "n09246464"]  # deliberately unsorted, as wnids.txt is


def write_tiny(root, per_class=6, val=9, grey=None, size=(64, 64)):
    """A tiny-imagenet-200 folder with ``per_class`` training JPEGs per class and ``val`` labelled val JPEGs; the
    image named ``grey`` (a file name) is written in greyscale. Returns the folder."""
    rng = np.random.default_rng(0)
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (folder / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn02124075\tEgyptian cat\n"
                                      "n09246464\tcliff, drop, drop-off\nn00000001\tunused\n")

    def save(path, c):
        # a class-coloured image plus noise: JPEG keeps the colour, so the classes stay apart after decoding
        px = np.clip(rng.normal(60 + 70 * c, 30, size=(*size, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(px)
        img = img.convert("L") if path.name == grey else img
        img.save(path, "JPEG", quality=90)

    for c, wnid in enumerate(WNIDS):
        (folder / "train" / wnid / "images").mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            save(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", c)
    lines = []
    for i in range(val):
        wnid = WNIDS[i % len(WNIDS)]
        save(folder / "val" / "images" / f"val_{i}.JPEG", WNIDS.index(wnid))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_reads_the_official_layout(tmp_path):
    folder = write_tiny(tmp_path, grey="n01443537_2.JPEG")
    data = ddm.data.load("tinyimagenet", data_dir=str(tmp_path))
    assert (len(data.train), len(data.test), data.num_classes) == (18, 9, 3)
    assert data.image_shape == (3, 64, 64)
    # labels are the sorted class ids' positions; names come from words.txt's first name
    assert data.class_names == ["goldfish", "Egyptian cat", "cliff"]
    assert data.train.y.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert data.test.y.tolist() == [1, 0, 2] * 3
    # pixels as Pillow decodes them, normalised with the training images' per-channel statistics
    raw = np.asarray(Image.open(folder / "train" / "n02124075" / "images" / "n02124075_3.JPEG").convert("RGB"))
    expect = (raw[..., 1] / 255.0 - data.mean[1]) / data.std[1]
    assert torch.allclose(data.train.x[6 + 3, 1], torch.as_tensor(expect, dtype=torch.float32), atol=1e-5)
    assert abs(float(data.train.x[:, 0].mean())) < 1e-4 and abs(float(data.train.x[:, 2].std()) - 1) < 1e-2
    # the greyscale file becomes three equal channels
    grey = data.train.x[2] * torch.tensor(data.std).view(3, 1, 1) + torch.tensor(data.mean).view(3, 1, 1)
    assert torch.allclose(grey[0], grey[1], atol=1e-5) and torch.allclose(grey[1], grey[2], atol=1e-5)
    # the folder itself works as --data-dir too
    assert len(ddm.data.load("tinyimagenet", data_dir=str(folder)).train) == 18


def test_a_subset_decodes_only_its_images_and_equals_the_full_read_subsetted(tmp_path, monkeypatch):
    write_tiny(tmp_path, per_class=8, val=12)
    full = load_tinyimagenet(tmp_path)
    import ddm.data.tinyimagenet as tin

    opened = []
    decode = tin._decode
    monkeypatch.setattr(tin, "_decode", lambda path: opened.append(path) or decode(path))
    part = ddm.data.load("tinyimagenet", data_dir=str(tmp_path), train_size=9, test_size=6, seed=3)
    assert len(opened) == 9 + 6
    want = stratified_subset(full.train, 9, 3)
    assert part.train.index.tolist() == want.index.tolist() and part.train.y.tolist() == want.y.tolist()
    assert torch.bincount(part.train.y).tolist() == [3, 3, 3]
    # same pixels, up to the normalisation, whose statistics come from the images read
    back = part.train.x * torch.tensor(part.std).view(1, 3, 1, 1) + torch.tensor(part.mean).view(1, 3, 1, 1)
    ref = want.x * torch.tensor(full.std).view(1, 3, 1, 1) + torch.tensor(full.mean).view(1, 3, 1, 1)
    assert torch.allclose(back, ref, atol=1e-5)
    assert stratified_subset(full.test, 6, 3).index.tolist() == part.test.index.tolist()


@pytest.mark.parametrize("damage, message", [
    ("none", "pass --data-dir"),
    ("empty", "no tiny-imagenet-200 folder"),
    ("class", "n09246464 of wnids.txt has no training images"),
    ("label", "line 2 names no class of wnids.txt"),
    ("missing", "val_4.JPEG is missing"),
    ("corrupt", "val_1.JPEG could not be decoded"),
])
def test_a_broken_folder_is_an_error_that_names_the_file(tmp_path, damage, message):
    folder = write_tiny(tmp_path / "data", per_class=2, val=6)
    data_dir = None if damage == "none" else str(tmp_path / ("empty" if damage == "empty" else "data"))
    (tmp_path / "empty").mkdir()
    if damage == "class":
        (folder / "train" / "n09246464" / "images" / "n09246464_0.JPEG").unlink()
        (folder / "train" / "n09246464" / "images" / "n09246464_1.JPEG").unlink()
        (folder / "train" / "n09246464" / "images").rmdir()
        message = "n09246464/images is missing"
    if damage == "label":
        notes = folder / "val" / "val_annotations.txt"
        lines = notes.read_text().splitlines()
        notes.write_text("\n".join([lines[0], lines[1].replace("n01443537", "n99999999"), *lines[2:]]) + "\n")
    if damage == "missing":
        (folder / "val" / "images" / "val_4.JPEG").unlink()
    if damage == "corrupt":
        (folder / "val" / "images" / "val_1.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=message):
        ddm.data.load("tinyimagenet", data_dir=data_dir)


def test_images_of_another_size_are_refused_not_resized(tmp_path):
    write_tiny(tmp_path, per_class=2, val=3, size=(32, 48))
    with pytest.raises(DataError, match="is 48x32, not 64x64"):
        ddm.data.load("tinyimagenet", data_dir=str(tmp_path))


def test_without_pillow_the_error_names_the_extra(tmp_path, monkeypatch):
    write_tiny(tmp_path, per_class=2, val=3)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ddm\[images\]'"):
        ddm.data.load("tinyimagenet", data_dir=str(tmp_path))


def test_the_cli_trains_and_groups_on_tiny_imagenet_files(tmp_path, capsys):
    write_tiny(tmp_path, per_class=10, val=9)
    ws = str(tmp_path / "ws")
    assert main(["cluster", "-w", ws, "--preset", "tiny", "--dataset", "tinyimagenet", "--data-dir", str(tmp_path),
                 "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"].startswith("tinyimagenet: 30 train / 9 test images of 3x64x64, 3 classes")
    assert out["model"]["spec"]["image_shape"] == [3, 64, 64] and out["model"]["spec"]["num_classes"] == 3
    assert out["groups"]["K"] == 6  # the tiny preset's 2 per class
    # the workspace reopens from its stored configuration, reading the same files again
    assert main(["cluster", "-w", ws, "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == out["dataset"]
