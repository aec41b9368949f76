import gzip
import re
import struct
import sys

import numpy as np
import pytest
import torch

import ddm
from ddm.data.idx import read_idx
from ddm.data.vision import read_cifar_binary
from ddm.exceptions import ConfigError, DataError, MissingDependencyError


def write_idx(path, array, gz=False):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_idx_folder(folder, n_train=30, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28))
        labs = np.arange(n) % 10
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", imgs, gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labs, gz)
        arrays[split] = (imgs, labs)
    return arrays


def test_digits_is_the_fixed_stratified_split():
    data = ddm.data.load("digits")
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.image_shape == (1, 8, 8) and data.num_classes == 10
    counts = torch.bincount(data.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified
    again = ddm.data.load("digits")
    assert torch.equal(again.train.x, data.train.x)


def test_digits_read_without_scikit_learn_are_scikit_learns_digits_and_split(monkeypatch):
    from sklearn.datasets import load_digits

    from ddm.data import digits

    bunch = load_digits()
    images, labels = digits.read_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)
    assert digits.test_rows_hex(bunch.target) == digits.TEST_ROWS  # the stored split is train_test_split's
    data = ddm.data.load("digits")
    test = digits.split_mask()
    assert torch.equal(data.test.y, torch.as_tensor(bunch.target[test]))
    # a scikit-learn that keeps the file elsewhere: load_digits itself, the same data
    monkeypatch.setattr(digits, "digits_file", lambda: None)
    again = ddm.data.load("digits")
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.y, data.test.y)


def test_subsets_are_stratified_and_keep_ids():
    data = ddm.data.load("digits", train_size=100, test_size=20)
    assert len(data.train) == 100 and len(data.test) == 20
    assert torch.bincount(data.train.y, minlength=10).min() >= 9
    full = ddm.data.load("digits")
    assert torch.equal(full.train.x[data.train.index], data.train.x)
    with pytest.raises(ddm.exceptions.DataError, match="data.test_size = 5 is smaller than the number of classes"):
        ddm.data.load("digits", test_size=5)


def test_subset_rows_kept_in_a_cache_folder_are_the_ones_scikit_learn_chooses(tmp_path, monkeypatch, caplog):
    import sklearn.model_selection

    from ddm.data.dataset import rows_cache

    plain = ddm.data.load("digits", train_size=100, test_size=20, seed=3)
    with rows_cache(tmp_path):
        first = ddm.data.load("digits", train_size=100, test_size=20, seed=3)
    files = sorted(tmp_path.glob("rows-subset-*.safetensors"))
    assert len(files) == 2  # the training and the test subset
    assert torch.equal(first.train.index, plain.train.index) and torch.equal(first.test.index, plain.test.index)

    def refused(*args, **kwargs):
        raise AssertionError("scikit-learn asked again")

    monkeypatch.setattr(sklearn.model_selection, "train_test_split", refused)
    with rows_cache(tmp_path):  # read back, scikit-learn not asked
        again = ddm.data.load("digits", train_size=100, test_size=20, seed=3)
        assert torch.equal(again.train.index, plain.train.index) and torch.equal(again.test.index, plain.test.index)
        with pytest.raises(AssertionError, match="asked again"):  # another seed is another choice
            ddm.data.load("digits", train_size=100, seed=4)
    monkeypatch.undo()
    files[0].write_bytes(b"not a safetensors file")
    with rows_cache(tmp_path), caplog.at_level("WARNING"):
        mended = ddm.data.load("digits", train_size=100, test_size=20, seed=3)
    assert "choosing the rows again" in caplog.text
    assert torch.equal(mended.train.index, plain.train.index) and torch.equal(mended.test.index, plain.test.index)
    with rows_cache(tmp_path):
        assert torch.equal(ddm.data.load("digits", train_size=100, test_size=20, seed=3).train.index,
                           plain.train.index)


def test_a_held_out_split_of_arrays_kept_in_a_cache_folder_is_the_same(tmp_path):
    from ddm.data.dataset import rows_cache

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, 200)
    plain = ddm.data.from_arrays(X, y, seed=2)
    for _ in range(2):  # computed and stored, then read back
        with rows_cache(tmp_path):
            cached = ddm.data.from_arrays(X, y, seed=2)
        assert torch.equal(cached.train.x, plain.train.x) and torch.equal(cached.test.y, plain.test.y)
    assert len(list(tmp_path.glob("rows-held-out-*.safetensors"))) == 1


def test_a_command_on_a_workspace_of_a_subset_does_not_import_scikit_learn_again(tmp_path):
    import subprocess

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(120, 4)).astype(np.float32), y=rng.integers(0, 3, 120))
    code = ("import sys; from ddm.cli.common import load_data; from ddm.config import DataConfig; "
            f"load_data(DataConfig(name='npz', data_dir={str(tmp_path / 'd.npz')!r}, train_size=60), "
            f"{str(tmp_path / 'ws')!r}); print('sklearn' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(2)]
    assert runs == ["True", "False"]  # the first chooses the rows, the second reads them from the workspace's cache/
    assert len(list((tmp_path / "ws" / "cache").glob("rows-*.safetensors"))) == 2


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_round_trip(tmp_path, gz):
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    p = tmp_path / ("x.idx" + (".gz" if gz else ""))
    write_idx(p, a, gz)
    assert np.array_equal(read_idx(p), a)


def test_idx_reader_rejects_truncated_and_foreign_files(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 5) + b"\x00" * 5)
    with pytest.raises(DataError, match="magic"):
        read_idx(p)
    write_idx(p, np.zeros((4,)))
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(DataError, match="expected 4 bytes"):
        read_idx(p)


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_idx_datasets_load_from_a_folder(tmp_path, name):
    arrays = make_idx_folder(tmp_path)
    data = ddm.data.load(name, data_dir=str(tmp_path))
    assert (len(data.train), len(data.test)) == (30, 10)
    assert data.image_shape == (1, 28, 28)
    mean, std = data.mean[0], data.std[0]
    expect = (arrays["train"][0][3] / 255.0 - mean) / std
    assert torch.allclose(data.train.x[3, 0], torch.as_tensor(expect, dtype=torch.float32), atol=1e-6)
    assert data.train.y.tolist() == list(arrays["train"][1])


def test_missing_idx_files_name_the_fix(tmp_path):
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        ddm.data.load("fashion-mnist", data_dir=str(tmp_path))


def write_cifar(path, n, label_bytes, n_classes):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = (np.arange(n) % n_classes).astype(np.uint8)
    rec = [np.concatenate([[labels[i] // 5] * (label_bytes - 1) + [labels[i]], imgs[i].ravel()]).astype(np.uint8)
           for i in range(n)]
    np.stack(rec).tofile(path)
    return imgs, labels


def test_cifar10_binary_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    first = None
    for i in range(1, 6):
        out = write_cifar(folder / f"data_batch_{i}.bin", 4, 1, 10)
        first = first or out
    write_cifar(folder / "test_batch.bin", 3, 1, 10)
    data = ddm.data.load("cifar10", data_dir=str(tmp_path))
    assert (len(data.train), len(data.test)) == (20, 3)
    assert data.image_shape == (3, 32, 32)
    imgs, labels = first
    expect = (imgs[1, 2] / 255.0 - data.mean[2]) / data.std[2]
    assert torch.allclose(data.train.x[1, 2], torch.as_tensor(expect, dtype=torch.float32), atol=1e-5)
    assert data.train.y[:4].tolist() == labels.tolist()


def test_cifar100_binary_uses_the_fine_label(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    write_cifar(folder / "train.bin", 6, 2, 100)
    write_cifar(folder / "test.bin", 2, 2, 100)
    imgs, labels = read_cifar_binary(folder / "train.bin", 2)
    assert labels.tolist() == list(range(6)) and imgs.shape == (6, 32, 32, 3)
    assert ddm.data.load("cifar100", data_dir=str(tmp_path)).num_classes == 100


def test_cifar_without_files_or_torchvision_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes any import of it fail
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ddm\[vision\]'"):
        ddm.data.load("cifar10", data_dir=str(tmp_path))


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="digits"):
        ddm.data.load("imagenet")


def test_from_arrays_takes_numpy_features_and_runs_the_pipeline(tmp_path):
    import numpy as np
    from sklearn.datasets import make_classification

    from ddm.data import from_arrays

    X, y = make_classification(n_samples=300, n_features=12, n_informative=6, n_classes=3, random_state=0)
    data = from_arrays(X, y, seed=0)
    assert data.train.x.shape[1:] == (12, 1, 1) and len(data.train) == 240 and len(data.test) == 60
    assert data.num_classes == 3 and abs(float(data.train.x.mean())) < 1e-5
    assert torch.bincount(data.test.y).tolist() == [20, 20, 20]  # stratified
    cfg = ddm.presets.tiny(data).with_overrides(["model.name=mlp", "hierarchical=false"])
    dm = ddm.DistilledDatamodel(tmp_path, cfg).fit(ddm.models.build(cfg.model, data), data.train)
    attr = dm.attribute(data.test[:4], "dist2")
    assert attr.weights.shape[:2] == (4, dm.groups.num_groups) and torch.isfinite(attr.weights).all()
    gray = from_arrays(torch.rand(40, 5, 5), np.arange(40) % 2, torch.rand(10, 5, 5), np.arange(10) % 2)
    assert gray.image_shape == (1, 5, 5) and len(gray.test) == 10


@pytest.mark.parametrize("X,y,words", [
    ("not an array", [0, 1], "a numpy array, a torch tensor or a pandas DataFrame"),
    (np.zeros((4, 3)), np.zeros(5), "shape [4]"),
    (np.zeros((4, 3)), np.array([0.5, 1, 0, 1]), "non-integer"),
    (np.zeros((4, 3)), np.array([-1, 1, 0, 1]), "negative"),
    (np.zeros((4, 3, 2, 2, 2)), np.zeros(4), "[N, D]"),
    (np.full((4, 3), np.nan), np.array([0, 1, 0, 1]), "NaN"),
    (np.zeros((4, 3)), np.array(["cat", "dog", "cat", "dog"]), "np.unique(y, return_inverse=True)"),
    (np.array([["a", "b"]] * 4), np.array([0, 1, 0, 1]), "encode categorical features"),
    (np.zeros((4, 3)), np.zeros(4, dtype=int), "need at least two"),
])
def test_from_arrays_errors_say_what_to_pass(X, y, words):
    from ddm.data import from_arrays

    with pytest.raises(DataError, match=re.escape(words)):
        from_arrays(X, y)


def test_from_arrays_takes_pandas_and_says_which_classes_have_no_samples(caplog):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), np.array([1, 2, 5])[np.arange(60) % 3]
    frame = ddm.data.from_arrays(pd.DataFrame(X), pd.Series(y))
    plain = ddm.data.from_arrays(X, y)
    assert torch.equal(frame.train.x, plain.train.x) and torch.equal(frame.test.y, plain.test.y)
    assert plain.num_classes == 6  # labels keep their values
    assert "classes [0, 3, 4] have no training samples" in caplog.text and "np.unique" in caplog.text


def test_from_torch_takes_a_dataset_or_a_dataloader():
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(60, 1, 6, 6, generator=g), torch.arange(60) % 3
    x_test, y_test = torch.rand(12, 1, 6, 6, generator=g), torch.arange(12) % 3
    a = ddm.data.from_torch(TensorDataset(x, y), TensorDataset(x_test, y_test))
    b = ddm.data.from_torch(DataLoader(TensorDataset(x, y), batch_size=7),
                            DataLoader(TensorDataset(x_test, y_test), batch_size=5))
    c = ddm.data.from_arrays(x, y, x_test, y_test)
    for d in (a, b):
        assert torch.equal(d.train.x, c.train.x) and torch.equal(d.test.y, c.test.y) and d.num_classes == 3
    held = ddm.data.from_torch(TensorDataset(x, y), test_fraction=0.25)  # no test set: stratified hold-out
    assert len(held.test) == 15
    with pytest.raises(DataError, match="Dataset or DataLoader"):
        ddm.data.from_torch([1, 2, 3])
    with pytest.raises(DataError, match=r"\(input, label\) pairs"):
        ddm.data.from_torch(TensorDataset(x))


def test_feature_vectors_get_an_mlp_from_the_presets_and_a_convnet_that_would_output_zeros_is_refused():
    """A ConvNet's instance norm over a 1x1 map outputs zeros (each channel normalised over one value): on feature
    vectors the demo preset's ConvNet trained to chance, silently. The presets now pick an MLP for them, and the
    ConvNet refuses the degenerate block, on features and on images too small for its depth."""
    rng = np.random.default_rng(0)
    feats = ddm.data.from_arrays(rng.normal(size=(60, 5)), np.arange(60) % 3)
    for preset in (ddm.presets.demo, ddm.presets.tiny, ddm.presets.paper):
        assert preset(feats).model.name == "mlp" and preset("digits").model.name == "convnet"
    with pytest.raises(ConfigError, match="feature vectors .* want model.name=mlp"):
        ddm.models.build("convnet", feats)
    digits = ddm.data.from_arrays(rng.normal(size=(40, 8, 8)), np.arange(40) % 2)
    with pytest.raises(ConfigError, match=r"block 4 of 4 on 8x8 inputs.*model.depth=3 or fewer"):
        ddm.models.build("convnet", digits, depth=4)
    assert ddm.models.build("convnet", digits, depth=4, norm="groupnorm") is not None  # a norm over channels is fine
    assert ddm.models.build("convnet", feats, norm="layernorm") is not None


def test_channel_last_images_are_taken_channel_first():
    """[N, H, W, C] arrays (numpy's and PIL's layout) become [N, C, H, W]; they were read as C = H channels of H x C."""
    rng = np.random.default_rng(0)
    last = rng.random((40, 6, 6, 3)).astype("float32")
    y = np.arange(40) % 2
    a = ddm.data.from_arrays(last, y, normalise=False)
    b = ddm.data.from_arrays(np.ascontiguousarray(last.transpose(0, 3, 1, 2)), y, normalise=False)
    assert a.image_shape == (3, 6, 6) and torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    gray = ddm.data.from_arrays(rng.random((40, 5, 5, 1)), y)
    assert gray.image_shape == (1, 5, 5)
    assert ddm.data.from_arrays(rng.random((40, 3, 4, 4)), y).image_shape == (3, 4, 4)  # channel-first stays
    assert ddm.data.from_arrays(rng.random((40, 7, 1, 1)), y).image_shape == (7, 1, 1)  # feature vectors stay


def test_an_npz_file_with_class_names_as_labels_is_read_in_their_sorted_or_given_order(tmp_path):
    """``--dataset npz`` cannot run Python first: labels saved as class names become indices, in sorted order or in
    the file's ``class_names`` order; a label outside ``class_names``, or names beside numbers, is an error."""
    from ddm.data.arrays import load_npz

    rng = np.random.default_rng(0)
    names = np.array(["cat", "ant", "bee"])
    y, y_test = names[np.arange(60) % 3], names[np.arange(15) % 3]
    X, X_test = rng.normal(size=(60, 5)), rng.normal(size=(15, 5))
    np.savez(tmp_path / "a.npz", X=X, y=y, X_test=X_test, y_test=y_test)
    data = load_npz(tmp_path / "a.npz")
    assert data.class_names == ["ant", "bee", "cat"]
    assert data.train.y.tolist() == [[2, 0, 1][i % 3] for i in range(60)]
    assert data.test.y.tolist() == [[2, 0, 1][i % 3] for i in range(15)]
    np.savez(tmp_path / "b.npz", X=X, y=y, X_test=X_test, y_test=y_test, class_names=names)
    data = load_npz(tmp_path / "b.npz")
    assert data.class_names == ["cat", "ant", "bee"] and data.train.y.tolist() == [i % 3 for i in range(60)]
    np.savez(tmp_path / "c.npz", X=X, y=y, class_names=names[:2])
    with pytest.raises(DataError, match=r"labels \['bee'\] are not in class_names"):
        load_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", X=X, y=y, X_test=X_test, y_test=np.arange(15) % 3)
    with pytest.raises(DataError, match="both as class names or both as class indices"):
        load_npz(tmp_path / "d.npz")


def test_an_npz_file_with_lower_case_inputs_is_read_as_with_upper_case_ones(tmp_path):
    """A targets file names its inputs ``x``; the npz dataset reads ``x`` and ``x_test`` as ``X`` and ``X_test``, and
    refuses a file that holds both spellings (which one was meant?)."""
    from ddm.data.arrays import load_npz

    rng = np.random.default_rng(0)
    X, y, X_test, y_test = rng.normal(size=(60, 5)), np.arange(60) % 3, rng.normal(size=(15, 5)), np.arange(15) % 3
    np.savez(tmp_path / "upper.npz", X=X, y=y, X_test=X_test, y_test=y_test)
    np.savez(tmp_path / "lower.npz", x=X, y=y, x_test=X_test, y_test=y_test)
    a, b = load_npz(tmp_path / "upper.npz"), load_npz(tmp_path / "lower.npz")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    np.savez(tmp_path / "both.npz", X=X, x=X, y=y)
    with pytest.raises(DataError, match="holds both x and X"):
        load_npz(tmp_path / "both.npz")
