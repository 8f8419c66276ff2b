"""The one error the sandbox raises for bad input or a missing dataset; the CLI prints it and exits 1."""


class ProdigyError(Exception):
    """Bad input (file and line, dataset name, setting) or a state Prodigy itself would refuse."""
