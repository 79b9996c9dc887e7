"""numpyvae: a Variational Autoencoder by hand in NumPy, every gradient derived and checked.

>>> from numpyvae import VAE, load_mnist
>>> images, labels = load_mnist("train")          # uint8 (60000, 784), bundled, offline
>>> vae = VAE()                                    # the seed's 784-500-500-20 softplus VAE
>>> loss = vae.partial_fit(images[:100] / 255)     # one Adam step: mean -ELBO in nats
"""

from .config import TrainConfig, VAEConfig
from .data import Dataset, load_dataset, load_fashion_mnist, load_frey, load_mnist
from .errors import CheckpointError, DataFileError, DataNotFoundError, DivergenceError
from .gradcheck import check_gradients, check_model
from .model import VAE, load_checkpoint, save_checkpoint
from .pretrained import list_pretrained, load_pretrained
from .runs import open_run
from .training import train

__all__ = [
    "VAE", "VAEConfig", "TrainConfig", "train", "Dataset", "load_dataset", "load_mnist",
    "load_fashion_mnist", "load_frey", "check_gradients", "check_model", "save_checkpoint",
    "load_checkpoint", "open_run", "list_pretrained", "load_pretrained", "CheckpointError",
    "DataFileError", "DataNotFoundError", "DivergenceError",
]
__version__ = "0.4.2"
