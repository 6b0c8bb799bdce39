"""Python client and `fmnist` command line for the Fashion-MNIST model service.

Needs only httpx and pydantic; `pip install 'fmnist-client[images]'` adds Pillow and numpy for
sending PIL images and arrays (file paths and encoded image bytes work without them).
"""

from fmnist_client.client import AsyncClient, Client, ImageInput, Images, Options, ServiceError

__all__ = ["AsyncClient", "Client", "ImageInput", "Images", "Options", "ServiceError"]
