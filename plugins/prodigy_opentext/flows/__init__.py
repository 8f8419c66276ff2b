"""The steps of each flow, as functions the DAGs' tasks call: the only place where hooks meet the rules.

One module per flow (``batch_approval``, ``release`` with its consumer); what several flows share is in
``_shared``. A DAG file only wires these steps together.
"""
