"""Forgeline: from a pretrained model and your own data to a served, evaluated model."""

__version__ = "0.1.0"
