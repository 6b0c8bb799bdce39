"""The three architectures. Each takes N x 1 x 28 x 28 images in [0, 1] and preprocesses inside
`forward`, so training, evaluation and serving cannot disagree about normalisation or padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ml.fashion_mnist import PIXEL_MEAN, PIXEL_STD


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - PIXEL_MEAN) / PIXEL_STD


def _pad_to_32(normalised: torch.Tensor) -> torch.Tensor:
    """28 x 28 -> 32 x 32. Padding after normalising makes the border the background value the
    network sees elsewhere."""
    return F.pad(normalised, (2, 2, 2, 2), value=-PIXEL_MEAN / PIXEL_STD)


class Classifier(nn.Module):
    """A convolutional trunk, then a penultimate feature vector, then the logits."""

    def trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations of each convolutional layer, first to last, as the next layer
        takes them (after its pooling)."""
        raise NotImplementedError

    def penultimate(self, last: torch.Tensor) -> torch.Tensor:
        """The penultimate features from the trunk's last activations."""
        raise NotImplementedError

    def head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.penultimate(self.trunk(x)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


THUMBNAIL_BLOCK = 4  # `layer_statistics` begins with the means of 4 x 4 blocks: 7 x 7 of them


def layer_statistics(images: torch.Tensor, activations: list[torch.Tensor]) -> torch.Tensor:
    """How an image looks to every layer, which the out-of-distribution score (`ml.ood`)
    compares with the training images': the image itself as a 7 x 7 thumbnail (the means of its
    4 x 4 blocks: where its light falls, which the channel statistics do not keep; on validation
    it is what best tells digits and upside-down garments from garments), then each
    convolution's per-channel mean and root mean square over the image, layer after layer
    (after pooling: four times fewer values to reduce than before it). The root mean square
    carries what a standard deviation would, at one pass over the activations instead of two;
    `a * a` rather than `a.square()`, which exports as a Pow that ONNX Runtime computes at half
    the speed of a Mul. N x (49 + 2 x all channels)."""
    thumbnail = F.avg_pool2d(images, THUMBNAIL_BLOCK).flatten(1)
    channels = [torch.cat([a.mean((2, 3)), (a * a).mean((2, 3)).sqrt()], 1) for a in activations]
    return torch.cat([thumbnail, *channels], 1)


class LeNet5(Classifier):
    """LeNet-5 on 32 x 32 input (28 x 28 zero-padded by 2), with ReLU and max-pooling."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)  # 32 -> 28, pool -> 14
        self.conv2 = nn.Conv2d(6, 16, 5)  # 14 -> 10, pool -> 5
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = F.max_pool2d(F.relu(self.conv1(_pad_to_32(_normalise(x)))), 2)  # 14 x 14
        return [first, F.max_pool2d(F.relu(self.conv2(first)), 2)]  # 5 x 5

    def penultimate(self, last: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(last.flatten(1)))))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc3(features)


def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MyNet(Classifier):
    """On 32 x 32 input (28 x 28 padded by 2): conv 32 -> 64 -> 64 (3x3, BatchNorm), max-pool after
    the first two, fc 4096 (64 x 8 x 8) -> 128 -> 10."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv1 = _conv_bn(1, 32)
        self.conv2 = _conv_bn(32, 64)
        self.conv3 = _conv_bn(64, 64)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(64 * 8 * 8, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def trunk(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = F.max_pool2d(self.conv1(_pad_to_32(_normalise(x))), 2)  # 32 -> 16
        second = F.max_pool2d(self.conv2(first), 2)  # 16 -> 8
        return [first, second, self.conv3(second)]  # 8 x 8

    def penultimate(self, last: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc1(self.dropout(last.flatten(1))))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(features))


class ConvVAE(nn.Module):
    """Convolutional VAE: 3 conv + FC to (mean, log-variance); FC + 3 transposed conv to pixels."""

    def __init__(self, latent_dim: int = 32) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1),  # 28 -> 14
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),  # 14 -> 7
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 3, padding=1),  # 7 -> 7
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.to_mean = nn.Linear(128 * 7 * 7, latent_dim)
        self.to_log_variance = nn.Linear(128 * 7 * 7, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 128 * 7 * 7),
            nn.LeakyReLU(0.2),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 3, padding=1),  # 7 -> 7
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),  # 7 -> 14
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1),  # 14 -> 28
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mean(h), self.to_log_variance(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    @staticmethod
    def reparameterise(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
        return mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_variance = self.encode(x)
        return self.decode(self.reparameterise(mean, log_variance)), mean, log_variance


def kl_per_dimension(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_variance)) || N(0, 1)) of each latent dimension, in nats."""
    return -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp())


def kl_to_standard_normal(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL to N(0, I) per image, in nats."""
    return kl_per_dimension(mean, log_variance).sum(1)


def vae_loss_terms(
    logits: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image BCE (summed over the 784 pixels) and KL, in nats.

    BCE is computed from the decoder's logits rather than its sigmoid output: same value,
    no saturation at 0 or 1.
    """
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    return bce, kl_to_standard_normal(mean, log_variance)


def optimise_for_inference(model: nn.Module) -> nn.Module:
    """The same function as `model` in eval mode, about twice as fast on CPU: every Conv2d
    followed by a BatchNorm2d becomes one Conv2d with the normalisation folded into its weights,
    and the conv weights move to channels-last layout, which oneDNN runs faster. Changes `model`
    in place (outputs agree to float rounding) and returns it; it can no longer be trained.
    """
    model.eval()
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(sequence) - 1):
            conv, norm = sequence[i], sequence[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequence[i] = fuse_conv_bn_eval(conv, norm)
                sequence[i + 1] = nn.Identity()
    return model.to(memory_format=torch.channels_last)
