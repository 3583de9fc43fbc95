"""``regauth serve``: the registry records as a JSON API (``/api/v1``) and a web console (``/``).

Over the same registry book, secret store and validation as the CLI: ``service.py`` orders the shared
rules (``regauth.registry_ops``, ``regauth.registries``) for a request; ``handlers.py`` is the JSON
edge, ``console.py`` the pages; ``auth.py`` and ``tokens.py`` the scoped API tokens; ``errors.py``
turns regauth errors into JSON; ``openapi.py`` is the document. Nothing here is imported by the
helper or by commands other than ``serve`` and ``token``.
"""
