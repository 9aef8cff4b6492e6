"""ComplexIF: a reproducible pipeline for complex instruction following."""

__version__ = "0.1.0"
