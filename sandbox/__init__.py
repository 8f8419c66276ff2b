"""Local stand-ins for the outside systems: run each as ``python -m sandbox.<name>``."""
