"""Settings from the environment, `fmnist-serve`, and the start-up checks of the runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from service import server
from service.backends import choose_backend
from service.runtime import StartupError
from service.settings import Settings, usable_cores
from tests.service.support import CHECKPOINT_DIR, make_settings, serving

pytestmark = pytest.mark.anyio


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("FMNIST_MODELS", "mynet, vae")
    monkeypatch.setenv("FMNIST_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("FMNIST_API_KEY", "k")
    monkeypatch.setenv("FMNIST_INSTANCE_ID", "replica-2")
    settings = Settings()
    assert settings.models == ["mynet", "vae"]
    assert settings.max_batch_size == 32
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k"
    assert settings.instance_id == "replica-2"


def test_settings_defaults(monkeypatch):
    for name in ("FMNIST_MODELS", "FMNIST_API_KEY", "FMNIST_INSTANCE_ID", "FMNIST_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.models == ["lenet", "mynet", "vae"]
    assert settings.max_images_per_request == 256
    assert settings.device == "auto" and settings.api_key is None
    assert settings.instance_id  # the host name


@pytest.mark.parametrize(
    ("name", "value"),
    [("FMNIST_MODELS", "resnet"), ("FMNIST_MAX_BATCH_SIZE", "0"), ("FMNIST_LOG_FORMAT", "xml")],
)
def test_bad_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_fmnist_serve_passes_its_options_to_uvicorn(monkeypatch):
    monkeypatch.setenv("FMNIST_WORKERS", "1")  # restored afterwards; --workers overrides it
    monkeypatch.setenv("FMNIST_DRAIN_SECONDS", "12")
    calls = []
    monkeypatch.setattr(server, "serve", lambda app, **options: calls.append((app, options)))
    server.main(["--host", "0.0.0.0", "--port", "9001", "--workers", "3"])
    app, options = calls[0]
    assert app == "service.app:app"
    assert (options["host"], options["port"], options["workers"]) == ("0.0.0.0", 9001, 3)
    assert options["drain_s"] == 12  # the supervisor's wait for its workers
    assert Settings().worker_processes == 3  # what each worker sees, to size its threads


def test_engine_threads_divide_the_cores_among_the_workers(monkeypatch):
    monkeypatch.setattr("service.settings.usable_cores", lambda: 4)
    assert Settings().worker_processes == 4 and Settings().engine_threads == 1
    assert Settings(workers=2).engine_threads == 2
    assert Settings(workers=8).engine_threads == 1
    assert Settings(workers=2, threads=3).engine_threads == 3


@pytest.mark.parametrize(
    ("backend", "device", "chosen"),
    [("auto", "cpu", "onnxruntime"), ("auto", "cuda", "torch"), ("torch", "cpu", "torch")],
)
def test_backend_follows_the_device(backend, device, chosen):
    assert choose_backend(backend, device) == chosen


def test_auto_is_onnxruntime_without_an_nvidia_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr("service.backends.NVIDIA_GPUS", tmp_path / "absent")
    assert choose_backend("auto", "auto") == "onnxruntime"


async def test_onnxruntime_on_cuda_is_a_clear_start_up_error():
    with pytest.raises(StartupError, match="onnxruntime backend serves on the CPU"):
        async with serving(make_settings(backend="onnxruntime", device="cuda")):
            pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
async def test_cuda_without_cuda_is_a_clear_start_up_error():
    # CUDA means the torch backend, which resolves the device.
    with pytest.raises(StartupError, match="CUDA is not available"):
        async with serving(make_settings(device="cuda")):
            pass


async def test_missing_checkpoint_is_a_start_up_error(tmp_path):
    with pytest.raises(StartupError, match="cannot load model 'lenet'"):
        async with serving(make_settings(models=["lenet"], checkpoint_dir=tmp_path)):
            pass


@pytest.mark.parametrize(
    ("backend", "altered"), [("onnxruntime", ".onnx"), ("torch", ".safetensors")]
)
async def test_altered_weights_are_refused(tmp_path, backend, altered):
    """Each backend checks the file it loads: the ONNX graph, or the weights."""
    for suffix in (".json", ".safetensors", ".onnx"):
        shutil.copy(CHECKPOINT_DIR / f"lenet{suffix}", tmp_path)
    with (tmp_path / f"lenet{altered}").open("ab") as weights:
        weights.write(b"\0")
    settings = make_settings(models=["lenet"], checkpoint_dir=tmp_path, backend=backend)
    with pytest.raises(StartupError, match=f"lenet{altered} has sha256"):
        async with serving(settings):
            pass


async def test_a_card_without_onnx_graphs_names_the_export_command(tmp_path):
    card = json.loads((CHECKPOINT_DIR / "lenet.json").read_text())
    del card["onnx"]
    (tmp_path / "lenet.json").write_text(json.dumps(card))
    with pytest.raises(StartupError, match="fmnist-export --model lenet"):
        async with serving(make_settings(models=["lenet"], checkpoint_dir=tmp_path)):
            pass


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
async def test_a_tampered_card_is_a_start_up_error(tmp_path, backend):
    """A card rewritten to call LeNet an autoencoder fails validation on either backend."""
    for suffix in (".safetensors", ".onnx"):
        shutil.copy(CHECKPOINT_DIR / f"lenet{suffix}", tmp_path)
    card = json.loads((CHECKPOINT_DIR / "lenet.json").read_text())
    (tmp_path / "lenet.json").write_text(json.dumps(card | {"kind": "autoencoder"}))
    settings = make_settings(models=["lenet"], checkpoint_dir=tmp_path, backend=backend)
    with pytest.raises(StartupError, match="cannot load model 'lenet': card .* is invalid"):
        async with serving(settings):
            pass


async def test_only_the_configured_models_are_loaded():
    async with serving(make_settings(models=["lenet"])) as client:
        assert [m["name"] for m in (await client.get("/models")).json()["models"]] == ["lenet"]
        response = await client.post("/reconstruct", json={"pixels": [[[0] * 28] * 28]})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "unknown_model"


def test_the_readme_documents_every_setting():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`FMNIST_{name.upper()}`" not in readme]
    assert not missing, f"settings missing from the README's configuration table: {missing}"


@pytest.mark.parametrize(
    ("cpu_max", "cores"), [("max 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("", 2)]
)
def test_usable_cores_respects_a_container_cpu_limit(monkeypatch, tmp_path, cpu_max, cores):
    """A CPU limit of 1.5 cores gives 2 workers' worth, half a core gives 1; no limit (or no
    cgroup file) leaves the affinity, here 2 cores."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    limit = tmp_path / "cpu.max"
    if cpu_max:
        limit.write_text(cpu_max + "\n")
    monkeypatch.setattr("service.settings.CGROUP_CPU_MAX", limit)
    assert usable_cores() == cores
