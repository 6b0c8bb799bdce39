from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ml.data import DatasetError, load_fashion_mnist, load_split, locate, read_idx, to_float
from tests.ml.synthetic import idx_bytes, write_idx


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_images_and_labels(tmp_path: Path, compress: bool) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28).astype(np.uint8)
    labels = np.array([9, 0, 4], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    read_images = read_idx(write_idx(tmp_path / f"img{suffix}", images, compress))
    read_labels = read_idx(write_idx(tmp_path / f"lab{suffix}", labels, compress))
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_idx(path)


def test_wrong_magic_number_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(b"\x00\x00\x0d\x01" + (4).to_bytes(4, "big") + bytes(4))
    with pytest.raises(DatasetError, match="magic number"):
        read_idx(path)


def test_corrupt_gzip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08 this is not gzip")
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(path)


def test_wrong_item_count_is_refused(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(10, np.uint8))
    with pytest.raises(DatasetError, match=r"expected \(10000, 28, 28\)"):
        load_split(tmp_path, "test")


def test_missing_dataset_says_where_it_looked_and_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        locate(tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert "apt-get install -y dataset-fashion-mnist" in message


def test_environment_variable_is_used(monkeypatch: pytest.MonkeyPatch, synthetic_dataset: Path):
    monkeypatch.setenv("FMNIST_DATA_DIR", str(synthetic_dataset))
    assert locate() == synthetic_dataset


def test_validation_split_is_held_out_and_fixed(synthetic_dataset: Path) -> None:
    data = load_fashion_mnist(synthetic_dataset)
    assert (len(data.train), len(data.val), len(data.test)) == (55_000, 5_000, 10_000)
    again = load_fashion_mnist(synthetic_dataset)
    assert torch.equal(data.val.images, again.val.images)
    assert data.val.indices_sha256() == again.val.indices_sha256()
    other = load_fashion_mnist(synthetic_dataset, split_seed=1)
    assert other.val.indices_sha256() != data.val.indices_sha256()
    held_out, kept = set(data.val.indices.tolist()), set(data.train.indices.tolist())
    assert not held_out & kept and len(held_out | kept) == 60_000
    assert torch.equal(
        data.val.images, load_split(synthetic_dataset, "train").images[data.val.indices]
    )
    x = to_float(data.val.images[:4])
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_training_script_reports_missing_data_without_traceback(tmp_path: Path, capsys) -> None:
    from ml.train import main

    assert main(["--model", "lenet", "--quick", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Fashion-MNIST not found" in err and "Traceback" not in err
