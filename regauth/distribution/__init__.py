"""Registry V2 client side: what regauth needs to talk to a registry.

* ``challenge``  -- parse ``WWW-Authenticate`` (pure).
* ``errors``     -- ``Outcome`` and ``UpstreamError`` (a ``RegistryError`` with an outcome).
* ``transport``  -- ``Upstream`` (host, base URL, TLS), sessions, timeouts, safe redirects, error mapping.
* ``token``      -- one request to a token realm (GET, OAuth2 password / refresh_token POST).
* ``auth``       -- ``Authenticator``: challenges to ``Authorization``, token cache, single-flight.
* ``client``     -- ``RegistryClient``: ping, manifests, blobs, tags.
* ``validate``   -- ``validate`` / ``validate_sync``: check a record and credential as `docker login` does.

Nothing is imported here: aiohttp costs a third of a second and the credential helper must not pay it.
"""
