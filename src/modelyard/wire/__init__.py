"""The JSON shape of every entity: shared by the API doors and the SDK.

Depends on ``domain`` only, so the SDK's embedded mode renders the same
answers as the server without importing the server (``render`` for the
registry's entities, ``governance`` for policies, approvals and audit,
``identity`` for users, tokens and role bindings).
"""
