"""What every part of the project agrees on about the data: class names, image size and the
training pixels' statistics. Plain constants, importable without PyTorch (the service needs them
on CPU, where it runs without torch)."""

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SIZE = 28
# Mean and standard deviation of the training pixels in [0, 1]; models apply them in forward.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530
