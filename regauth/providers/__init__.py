"""Providers turn a registry host into a credential: ``static`` and ``env`` read it, the clouds (``ecr``,
``acr``, ``gcp``) mint short-lived tokens that ``cache`` keeps; ``routing`` picks one per host."""
