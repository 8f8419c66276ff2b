"""The governance rules, in plain Python: no Airflow, no hooks, no network.

Records and their export, agreement, consensus, QA sampling, batches, approvals, immutable releases, the
audit log, validation tables and the payloads the flows' steps hand each other. Everything here can be
used and tested without Airflow; ``tests/core/test_purity.py`` keeps it so.
"""
