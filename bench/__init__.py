"""Benchmarks that measure the project's performance targets (DESIGN §7) side by side in one run.

Each module has ``main(argv) -> int`` (0 when its targets are met); ``python -m bench`` runs them all.
"""
