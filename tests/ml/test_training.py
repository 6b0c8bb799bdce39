"""Quick-mode training runs on a synthetic dataset: checkpoints, cards, reloading, figures."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

from ml.card_schema import CARD_FORMAT, command_options
from ml.cards import CheckpointError, read_card, read_verified
from ml.checkpoint import load_model
from ml.data import load_fashion_mnist, to_float
from ml.embedding import embed
from ml.export import main as export_main
from ml.export import to_onnx
from ml.figures import FIGURES
from ml.graphs import GRAPHS, Graph, graph_file
from ml.pca_map import project
from ml.train import WeightAverage, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("quick")
    argv = ["--model", "all", "--quick", "--seed", "3", "--data-dir", str(synthetic_dataset)]
    argv += ["--out", str(out / "checkpoints"), "--reports", str(out / "reports")]
    assert main(argv) == 0
    return out, argv


@pytest.mark.parametrize("name", ["lenet", "mynet", "vae"])
def test_card_records_how_and_how_well(quick_run, name: str) -> None:
    out, argv = quick_run
    card = read_card(name, out / "checkpoints")  # valid in the newest format
    assert card["format"] == CARD_FORMAT
    training = card["training"]
    finished = datetime.fromisoformat(training["finished_at"])
    assert finished.tzinfo is not None and abs(datetime.now(UTC) - finished) < timedelta(hours=1)
    command = shlex.split(training["command"])
    assert command[1 : len(argv) + 1] == argv  # as typed, then what it left to defaults
    options = command_options(training["command"])
    assert (options["--seed"], options["--device"]) == ("3", training["device"])
    assert options["--threads"] == str(training["threads"])
    assert training["seed"] == 3 and training["split"]["seed"] == 0
    assert {"python", "torch", "numpy", "cpu_capability"} <= set(card["versions"])
    assert len(card["history"]) == 1 and card["history"][0]["epoch"] == 1
    assert len(card["weights"]["sha256"]) == 64
    test = card["metrics"]["test"]
    if card["kind"] == "classifier":
        assert len(test["confusion_matrix"]) == 10
        assert sum(map(sum, test["confusion_matrix"])) == test["count"] == 1_000
        # The synthetic classes are trivially separable: even one small epoch learns them, well
        # above the 10% of chance (MyNet's weight average still lags its 16 steps of training).
        assert test["accuracy"] > 0.3
    else:
        assert test["kl"] > 0 and test["loss"] == pytest.approx(test["bce"] + test["kl"], abs=0.01)
    averaged = "weights averaged" in card["training"]["optimizer"]
    assert averaged == (name in ("mynet", "vae"))  # the recipes that ask for it


@pytest.mark.parametrize("name", ["lenet", "mynet", "vae"])
def test_reloaded_checkpoint_gives_identical_outputs(quick_run, synthetic_dataset, name) -> None:
    out, _ = quick_run
    model, card = load_model(name, out / "checkpoints")
    again, _ = load_model(name, out / "checkpoints")
    x = to_float(load_fashion_mnist(synthetic_dataset).test.images[:16])
    layer = "latent" if card["kind"] == "autoencoder" else "logits"
    with torch.inference_mode():
        first, second = embed(model, x, layer), embed(again, x, layer)
    assert torch.equal(first, second)
    # The stored PCA map projects new vectors to finite 2-D points.
    xy = project(first.numpy(), card["embedding_maps"][layer])
    assert xy.shape == (16, 2) and torch.isfinite(torch.from_numpy(xy)).all()


@pytest.mark.parametrize("name", ["lenet", "vae"])
def test_training_exports_onnx_graphs_that_compute_what_the_model_does(
    quick_run, synthetic_dataset, name
) -> None:
    out, _ = quick_run
    folder = out / "checkpoints"
    model, card = load_model(name, folder)
    graphs = card["onnx"]["graphs"]
    assert sorted(graphs) == sorted(GRAPHS[card["kind"]])
    for graph, entry in graphs.items():
        assert entry["file"] == graph_file(name, graph)
        assert read_verified(entry, folder, graph)  # the recorded hash is the file's
    x = to_float(load_fashion_mnist(synthetic_dataset).test.images[:16])
    session = onnxruntime.InferenceSession(str(folder / graphs["forward"]["file"]))
    layer, output = ("latent", "latent_mean") if name == "vae" else ("logits", "logits")
    (onnx,) = session.run([output], {"images": x.numpy()})
    with torch.inference_mode():
        assert np.abs(onnx - embed(model, x, layer).numpy()).max() < 1e-4


def test_fmnist_export_adds_graphs_to_existing_checkpoints(quick_run, tmp_path: Path) -> None:
    out, _ = quick_run
    card = json.loads((out / "checkpoints" / "lenet.json").read_text())
    del card["onnx"]
    (tmp_path / "lenet.json").write_text(json.dumps(card))
    shutil.copy(out / "checkpoints" / "lenet.safetensors", tmp_path)
    assert export_main(["--model", "lenet", "--checkpoints", str(tmp_path)]) == 0
    exported = json.loads((tmp_path / "lenet.json").read_text())
    assert exported["onnx"]["graphs"]["forward"]["file"] == "lenet.onnx"
    assert {k: v for k, v in exported.items() if k != "onnx"} == card  # nothing else changed
    # The graph of the same weights is the same file: the export is deterministic.
    assert (tmp_path / "lenet.onnx").read_bytes() == (
        out / "checkpoints" / "lenet.onnx"
    ).read_bytes()
    with (tmp_path / "lenet.safetensors").open("ab") as weights:
        weights.write(b"\0")
    assert export_main(["--model", "lenet", "--checkpoints", str(tmp_path)]) == 1


def test_tampered_weights_are_refused(quick_run, tmp_path: Path) -> None:
    out, _ = quick_run
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"lenet{suffix}").write_bytes(
            (out / "checkpoints" / f"lenet{suffix}").read_bytes()
        )
    weights = tmp_path / "lenet.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model("lenet", tmp_path)


def test_same_seed_same_weights(quick_run, synthetic_dataset: Path, tmp_path: Path) -> None:
    out, _ = quick_run
    argv = ["--model", "lenet", "--quick", "--seed", "3", "--data-dir", str(synthetic_dataset)]
    assert main([*argv, "--out", str(tmp_path), "--no-figures"]) == 0
    first = json.loads((out / "checkpoints" / "lenet.json").read_text())
    second = json.loads((tmp_path / "lenet.json").read_text())
    assert first["weights"]["sha256"] == second["weights"]["sha256"]


def test_recorded_command_reruns_to_identical_weights(synthetic_dataset: Path, tmp_path: Path):
    """The card alone reruns a training: its command, run again in a fresh process, gives the
    same weights bit for bit, though the first run left the seed and thread count to defaults
    (one thread here, where a fresh process would start with one per core)."""
    argv = ["--model", "mynet", "--quick", "--device", "cpu", "--no-figures"]
    argv += ["--data-dir", str(synthetic_dataset), "--out", str(tmp_path)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    first = read_card("mynet", tmp_path)
    command = first["training"]["command"]
    assert command_options(command)["--threads"] == "1"
    rerun = [sys.executable, "-m", "ml.train", *shlex.split(command)[1:]]
    subprocess.run(rerun, check=True, capture_output=True, timeout=300)
    second = read_card("mynet", tmp_path)
    assert second["weights"]["sha256"] == first["weights"]["sha256"]
    assert second["training"]["split"] == first["training"]["split"]
    assert second["training"]["command"] == command  # nothing left to add


@pytest.mark.parametrize(
    "figure",
    [
        f"{name}_{figure}"
        for name, kind in (("lenet", "classifier"), ("mynet", "classifier"), ("vae", "autoencoder"))
        for figure in FIGURES[kind]
    ],
)
def test_figures_are_valid_pngs(quick_run, figure: str) -> None:
    out, _ = quick_run
    path = out / "reports" / f"{figure}.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 300 and image.height > 150


def test_weight_average_follows_the_weights_with_a_ramped_decay() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    torch.nn.init.zeros_(model[0].weight)
    average = WeightAverage(model, decay=0.99)
    torch.nn.init.ones_(model[0].weight)
    model[1].num_batches_tracked.fill_(7)
    average.update(model)  # step 1: decay min(0.99, 2/11), so the average moves 9/11 of the way
    assert torch.allclose(average.model[0].weight, torch.full((2, 2), 9 / 11))
    assert average.model[1].num_batches_tracked.item() == 7  # integer buffers are copied
    for _ in range(2000):
        average.update(model)
    assert torch.allclose(average.model[0].weight, torch.ones(2, 2))
    assert average.model is not model and torch.equal(model[0].weight, torch.ones(2, 2))


def test_spatial_means_are_exported_as_global_average_pools(tmp_path: Path) -> None:
    """What ONNX Runtime runs in its blocked layout without copies; the values stay the same."""

    class Means(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            features = torch.relu(images - 0.5)
            return torch.cat([features.mean((2, 3)), (features * features).mean((2, 3))], 1)

    graph = Graph("images", ("means",), "spatial means")
    data = to_onnx(Means(), torch.rand(2, 1, 28, 28), graph, tmp_path / "means.onnx")
    operators = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert "GlobalAveragePool" in operators
    assert "ReduceMean" not in operators
    x = torch.rand(5, 1, 28, 28)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (means,) = session.run(None, {"images": x.numpy()})
    assert np.allclose(means, Means()(x).numpy(), atol=1e-6)
