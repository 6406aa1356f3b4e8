"""The run engine: templating, search space, runner, cache and executor.

Pure of SQLAlchemy and FastAPI: it talks to storage only through the protocols in
``persistence.py``.
"""
