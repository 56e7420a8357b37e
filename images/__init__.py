"""openscore.images: runtime and environment images, the deployment layer, and the registry they live in.

- `EnvironmentRecipe`: what an environment image is made of; its hash names the image (Azure's image cache).
- `ensure_environment_image`: look the recipe's tag up (registry or local storage), build it with buildah only
  when it is absent.
- `build_deployment_layer`: the app and models as one deterministic layer on top of an environment image,
  written without a build container and pushed with the OCI distribution API.
- `list_images`: the images a registry (or local storage) holds.

Nothing is pushed anywhere unless a registry is named: `registry=None` keeps everything in local storage.
"""

from .builder import BuildError, ensure_environment_image, list_images
from .deployment import build_deployment_layer
from .errors import ImageError, RegistryError
from .recipe import FLAVOURS, EnvironmentRecipe, ImageRef, RecipeError

__all__ = [
    "FLAVOURS", "BuildError", "EnvironmentRecipe", "ImageError", "ImageRef", "RecipeError", "RegistryError",
    "build_deployment_layer", "ensure_environment_image", "list_images",
]
