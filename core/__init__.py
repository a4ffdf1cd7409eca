"""The shared kernel: imports no app of this project.

Domain errors and their mapping to HTTP, the API's base pieces (fields,
parsers, pagination, throttling, error handler, schema helpers, the scoped
view base), validators of registration numbers, the ``Caller`` of a posting
and the ``Scope`` of a request. Apps build on it; it builds on nothing of theirs.
"""
