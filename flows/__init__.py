"""Prefect orchestration of the ComplexIF DVC pipeline.

- :mod:`flows.pipeline`: the ``complexif-pipeline`` flow (one task per DVC stage) and a CLI.
- :mod:`flows.serve`: serve it as a deployment that is triggered from the Prefect UI.
- :mod:`complexif.orchestration.dvc` (library): the DVC plumbing (stage discovery, streaming, output parsing).

Nothing is imported here, so ``import flows`` stays cheap (Prefect and DVC load on use).
"""
