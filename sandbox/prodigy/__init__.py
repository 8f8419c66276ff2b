"""A local stand-in for Prodigy: its database (the peewee tables Prodigy writes) and its annotation server.

Run it as ``python -m sandbox.prodigy <command>`` (``db-in``, ``db-out``, ``stats``, ``drop``, ``serve``,
``annotate``). It shares no code with ``plugins/``: the project's hooks are tested against it, so a hook bug
must not be mirrored here.
"""
