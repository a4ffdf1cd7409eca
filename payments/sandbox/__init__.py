"""A sandbox payment gateway shipped with the project, for development and tests.

Start it with one command::

    python -m payments.sandbox --port 8765 --secret sandbox-secret --api-key sandbox-key

See ``payments.sandbox.server`` for what it answers and its switches.
"""
