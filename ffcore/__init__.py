"""FeatherFace ECA-CBAM: the companion library of the thesis (model, data, training, evaluation)."""

__version__ = "0.1.0"
