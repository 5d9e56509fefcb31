"""Pure command builders and plans, one module per collection; no I/O.

Which collection needs which indexes is listed once, in :mod:`agno_mongo.domains`.
"""
