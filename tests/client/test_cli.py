"""The `fmnist` command against the real service: output, files written and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fmnist_client.cli import main
from PIL import Image

from tests.client.live_server import EXAMPLES, Server
from tests.live_service import free_port


def run(server: Server, *argv: str) -> int:
    return main([*argv, "--url", server.url, "--api-key", server.api_key])


def test_classify_table(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    images = [str(EXAMPLES / "trouser.png"), str(EXAMPLES / "bag.png")]
    assert run(server, "classify", *images, "--model", "lenet", "--top-k", "2") == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "image",
        "label",
        "confidence",
        "unlike",
        "training",
        "top",
        "classes",
    ]
    assert [row.split()[:2] for row in rows] == [[images[0], "Trouser"], [images[1], "Bag"]]
    assert [row.split()[3] for row in rows] == ["no", "no"]


def test_classify_flags_and_refuses_what_is_no_garment(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noise = tmp_path / "noise.png"
    Image.effect_noise((28, 28), 80).save(noise)
    assert run(server, "classify", str(noise), "--uncalibrated") == 0
    _, row = capsys.readouterr().out.splitlines()
    assert row.split()[3] == "YES"
    assert run(server, "classify", str(EXAMPLES / "bag.png"), str(noise), "--refuse-ood") == 1
    assert "image 2 of 2 unlike the training data" in capsys.readouterr().err


def test_classify_json(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server, "classify", str(EXAMPLES / "boot.png"), "--model", "lenet", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["model"] == "lenet"
    assert answer["predictions"][0]["label"] == "Ankle boot"
    assert len(answer["predictions"][0]["top_k"]) == 3


def test_embed_and_reconstruct_tables(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    images = [str(EXAMPLES / "coat.png"), str(EXAMPLES / "shirt.png")]
    assert run(server, "embed", *images, "--model", "lenet", "--layer", "logits") == 0
    title, header, *rows = capsys.readouterr().out.splitlines()
    assert title == "lenet logits: 10 dimensions"
    assert len(rows) == 2
    assert run(server, "reconstruct", *images) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["image", "bce", "kl", "mse"]
    assert len(rows) == 2


def test_png_files(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sandal, boot = str(EXAMPLES / "sandal.png"), str(EXAMPLES / "boot.png")
    saved = {name: tmp_path / f"{name}.png" for name in ("chart", "map", "recon", "strip", "grid")}
    commands = {
        "chart": ["classify", sandal, boot],
        "map": ["embed", sandal, boot, "--model", "vae"],
        "recon": ["reconstruct", sandal, boot, "--scale", "3"],
        "strip": ["interpolate", sandal, boot, "--steps", "12", "--method", "slerp"],
        "grid": ["generate", "-n", "16", "--seed", "1"],
    }
    for name, argv in commands.items():
        assert run(server, *argv, "-o", str(saved[name])) == 0
    sizes = {name: Image.open(path).size for name, path in saved.items()}
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {saved[name]} ({width}x{height} PNG)" for name, (width, height) in sizes.items()
    ]
    assert min(sizes["chart"]) > 100 and min(sizes["map"]) > 100
    assert sizes["recon"][0] >= 2 * 84 and sizes["recon"][1] >= 2 * 84
    assert sizes["strip"][0] >= 12 * 56 and 56 <= sizes["strip"][1] < 2 * 56
    assert sizes["grid"][0] == sizes["grid"][1] >= 4 * 56


def test_generate_and_interpolate_json(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server, "generate", "-n", "3", "--seed", "7", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["seed"], len(answer["images"])) == (7, 3)
    sandal, boot = str(EXAMPLES / "sandal.png"), str(EXAMPLES / "boot.png")
    assert run(server, "interpolate", sandal, boot, "--steps", "4") == 0
    title, header, *rows = capsys.readouterr().out.splitlines()
    assert title.startswith("4 frames, linear")
    assert len(rows) == 4


def test_models_and_health(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(server, "models") == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert [row.split()[0] for row in rows] == ["lenet", "mynet", "vae"]
    assert run(server, "models", "vae", "--json") == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "autoencoder"
    assert run(server, "health") == 0
    assert "ready on cpu: lenet, mynet, vae" in capsys.readouterr().out


def test_url_and_key_from_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FMNIST_URL", server.url)
    monkeypatch.setenv("FMNIST_API_KEY", server.api_key)
    assert main(["models", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", str(EXAMPLES / "bag.png"), "--model", "resnet"], "unknown_model (HTTP 422)"),
        (["generate", "-n", "0"], "invalid_parameter (HTTP 422)"),
        (["classify", str(EXAMPLES / "missing.png")], "No such file"),
        (["models", "resnet"], "not_found (HTTP 404)"),
    ],
    ids=["unknown-model", "bad-parameter", "missing-file", "no-such-model"],
)
def test_failures_exit_1(
    server: Server, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(server, *argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("fmnist: error: ")
    assert message in captured.err


def test_unauthorized_and_unreachable(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--url", server.url, "--api-key", "wrong"]) == 1
    assert "unauthorized (HTTP 401)" in capsys.readouterr().err
    assert main(["health", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "connection_error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["classify"],
        ["frobnicate"],
        ["interpolate", "a.png", "b.png", "--method", "cubic"],
        ["generate", "-n", "many"],
        ["generate", "--json", "-o", "grid.png"],
    ],
    ids=["no-command", "no-images", "unknown-command", "bad-choice", "bad-number", "json-and-o"],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: fmnist" in capsys.readouterr().err


def test_installed_command_help() -> None:
    script = Path(sys.executable).with_name("fmnist")
    done = subprocess.run(
        [script, "classify", "--help"], capture_output=True, text=True, check=True
    )
    assert "exit status:" in done.stdout
    assert "FMNIST_URL" in done.stdout
