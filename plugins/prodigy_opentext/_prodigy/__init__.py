"""Prodigy's storage behind :class:`~prodigy_opentext.hooks.prodigy.ProdigyHook`: its tables and where
its database is."""
