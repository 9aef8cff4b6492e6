"""Driving DVC from Python: stage discovery, running stages, reading their status."""
