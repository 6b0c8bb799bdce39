"""Metrics on a whole split, batched: what the cards record and the tests re-check."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ml.data import CLASS_NAMES, Split, to_float
from ml.models import ConvVAE, vae_loss_terms


@torch.inference_mode()
def batched(fn, images: torch.Tensor, device: torch.device, batch_size: int = 1000) -> torch.Tensor:
    """Apply `fn` to float batches of uint8 `images` on `device`; results concatenated on CPU."""
    outputs = [
        fn(to_float(images[i : i + batch_size]).to(device)).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(outputs)


def classifier_metrics(model: nn.Module, split: Split, device: torch.device) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and confusion matrix (rows: true, columns: predicted)."""
    model.eval()
    logits = batched(model, split.images, device)
    loss = nn.functional.cross_entropy(logits, split.labels).item()
    predicted = logits.argmax(1)
    confusion = torch.zeros(len(CLASS_NAMES), len(CLASS_NAMES), dtype=torch.long)
    confusion.index_put_((split.labels, predicted), torch.ones_like(predicted), accumulate=True)
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1).float()
    return {
        "loss": round(loss, 5),
        "accuracy": round((predicted == split.labels).float().mean().item(), 5),
        "per_class_accuracy": {
            name: round(acc, 4) for name, acc in zip(CLASS_NAMES, per_class.tolist(), strict=True)
        },
        "confusion_matrix": confusion.tolist(),
        "count": len(split),
    }


def bce_floor(images: torch.Tensor) -> float:
    """The least binary cross-entropy any reconstruction can have on uint8 `images`, in nats per
    image: the binary entropy of each pixel's grey level, summed. The VAE's Bernoulli likelihood
    is not a normalised density for grey pixels, so even a perfect reconstruction scores this."""
    x = to_float(images).double()
    entropy = -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x))
    return round(entropy.flatten(1).sum(1).mean().item(), 3)


def vae_metrics(
    model: ConvVAE, split: Split, device: torch.device, seed: int = 0
) -> dict[str, Any]:
    """BCE, KL and their sum (a one-sample negative ELBO, as in pytorch/examples' VAE) in nats
    per image, with one sampled latent per image, and the split's BCE floor (see `bce_floor`)."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = torch.zeros(2, dtype=torch.float64)
    with torch.inference_mode():
        for i in range(0, len(split), 1000):
            x = to_float(split.images[i : i + 1000]).to(device)
            mean, log_variance = model.encode(x)
            noise = torch.randn(mean.shape, generator=generator, device=device)
            z = mean + noise * torch.exp(0.5 * log_variance)
            bce, kl = vae_loss_terms(model.decode_logits(z), x, mean, log_variance)
            totals += torch.stack([bce.sum(), kl.sum()]).double().cpu()
    bce, kl = (totals / len(split)).tolist()
    return {
        "bce": round(bce, 3),
        "kl": round(kl, 3),
        "loss": round(bce + kl, 3),
        "bce_floor": bce_floor(split.images),
        "count": len(split),
    }
