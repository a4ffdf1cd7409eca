"""Who a caller is: partners, their API keys, key authentication and stored idempotent responses.

Sits low, beside ``core``: every app's API authenticates and replays through
it, and it imports no app (its models name brands by string reference).
Webhooks, which listen to the ledger, live higher up, in ``partners``.
"""
