"""Datasets, their preparation (:mod:`xmodal.data.prepare`), image loading and transforms.

Importing this package registers every dataset in :data:`xmodal.registry.DATASETS`.
"""

from xmodal.data import emoji, fashion_mnist

__all__ = ["emoji", "fashion_mnist"]
