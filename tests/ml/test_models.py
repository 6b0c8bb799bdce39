from __future__ import annotations

import inspect
import math

import pytest
import torch

import ml.models
from ml.models import ConvVAE, LeNet5, MyNet, optimise_for_inference, vae_loss_terms
from ml.registry import MODELS, UnknownModelError, get_spec


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("model", "parameters", "feature_dim"),
    [(LeNet5(), 61_706, 84), (MyNet(), 581_610, 128)],
)
def test_classifier_shapes_and_size(model, parameters: int, feature_dim: int) -> None:
    x = torch.rand(5, 1, 28, 28)
    model.eval()
    assert model(x).shape == (5, 10)
    assert model.features(x).shape == (5, feature_dim)
    assert torch.allclose(model.head(model.features(x)), model(x))
    assert parameter_count(model) == parameters


def test_lenet_sees_a_32x32_input() -> None:
    model = LeNet5()
    seen = {}
    model.conv1.register_forward_hook(lambda m, inputs, out: seen.update(shape=inputs[0].shape))
    model(torch.rand(2, 1, 28, 28))
    assert seen["shape"] == (2, 1, 32, 32)


def test_vae_shapes_and_size() -> None:
    vae = ConvVAE(latent_dim=32).eval()
    x = torch.rand(3, 1, 28, 28)
    mean, log_variance = vae.encode(x)
    assert mean.shape == log_variance.shape == (3, 32)
    images = vae.decode(mean)
    assert images.shape == (3, 1, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0
    reconstruction, mean2, _ = vae(x)
    assert reconstruction.shape == (3, 1, 28, 28) and torch.equal(mean, mean2)
    assert parameter_count(vae) == 822_785


def test_vae_loss_on_known_input() -> None:
    # Zero logits predict 0.5 everywhere: BCE is 784 ln 2 whatever the image.
    # A posterior equal to the prior has KL 0; mean 1 in every dimension adds 1/2 per dimension.
    x = torch.rand(2, 1, 28, 28)
    logits = torch.zeros(2, 1, 28, 28)
    mean = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    bce, kl = vae_loss_terms(logits, x, mean, torch.zeros(2, 2))
    assert torch.allclose(bce, torch.full((2,), 784 * math.log(2)))
    assert torch.allclose(kl, torch.tensor([0.0, 1.0]))


def test_registry_builds_every_model_and_rejects_unknown_names() -> None:
    assert set(MODELS) == {"lenet", "mynet", "vae"}
    assert {spec.kind for spec in MODELS.values()} == {"classifier", "autoencoder"}
    assert isinstance(get_spec("mynet").create(), MyNet)
    with pytest.raises(UnknownModelError, match="known models: lenet, mynet, vae"):
        get_spec("resnet")


@pytest.mark.parametrize("spec", MODELS.values(), ids=list(MODELS))
def test_registry_hyper_parameters_are_the_constructor_arguments(spec) -> None:
    """What a card may set is what the architecture's constructor takes (but the class count)."""
    constructor = inspect.signature(getattr(ml.models, spec.architecture))
    assert set(type(spec.hyper_parameters).model_fields) == set(constructor.parameters) - {
        "num_classes"
    }


def deterministic_outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(model, ConvVAE):
        return model.decode(model.encode(x)[0])
    return model(x)


@pytest.mark.parametrize("build", [LeNet5, MyNet, lambda: ConvVAE(latent_dim=8)])
def test_optimise_for_inference_keeps_the_function(build) -> None:
    torch.manual_seed(0)
    model = build()
    for module in model.modules():  # BatchNorm statistics as after training, not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    model.eval()
    x = torch.rand(6, 1, 28, 28)
    with torch.inference_mode():
        before = deterministic_outputs(model, x)
        fast = optimise_for_inference(model)
        after = deterministic_outputs(fast, x)
    assert fast is model and not fast.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert torch.allclose(before, after, atol=1e-5)


def test_layer_statistics_begin_with_the_thumbnail_then_each_layers_channels() -> None:
    images = torch.rand(3, 1, 28, 28)
    activations = [torch.rand(3, 6, 14, 14), torch.rand(3, 16, 5, 5)]
    statistics = ml.models.layer_statistics(images, activations)
    assert statistics.shape == (3, 49 + 2 * (6 + 16))
    assert torch.allclose(statistics[:, 0], images[:, 0, :4, :4].mean((1, 2)))
    assert torch.allclose(statistics[:, 48], images[:, 0, 24:, 24:].mean((1, 2)))
    first = activations[0]
    assert torch.allclose(statistics[:, 49:55], first.mean((2, 3)))
    assert torch.allclose(statistics[:, 55:61], first.pow(2).mean((2, 3)).sqrt())
