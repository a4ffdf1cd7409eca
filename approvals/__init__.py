"""Maker-checker: a dangerous move waits for a second person's approval.

See ``approvals.models`` for the design; apps register what each kind of
request executes in ``approvals.registry``.
"""
