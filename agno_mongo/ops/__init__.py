"""Pure command builders and plans, one module per collection; no I/O.

Names say which is which: a function that returns one :class:`~agno_mongo.ops.command.Command` is
named for what it does (``find_config``) and is used with ``yield``; a plan (a generator of steps)
ends in ``_plan``, or ``_steps`` for the inner plan of a transaction, and is used with
``yield from``. Drivers answer reads with documents or lists and writes with
:class:`~agno_mongo.ops.command.Written`. ``tests/test_plans.py`` checks the naming.

Which collection needs which indexes is listed once, in :mod:`agno_mongo.domains`.
"""
