"""The package version, in a module of its own so that low layers (the model card) can name it without
importing the package's face (``clipbert_emo/__init__.py`` imports the prediction API)."""

__version__ = "0.1.0"
