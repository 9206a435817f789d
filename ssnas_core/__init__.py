"""ssnas: self-supervised neural architecture search on imbalanced image datasets."""

__version__ = "0.1.0"
