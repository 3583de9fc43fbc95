"""``regauth proxy``: an auth-injecting, pull-only Registry V2 proxy on aiohttp.

main.py           run_proxy: options, the loopback rule, serving, SIGTERM
app.py            make_proxy_app: routes, middlewares, the shared state (state.py)
routing.py        request -> upstream + repository (prefix host or NAME, ns, Docker Hub); no open proxy
handlers.py       /v2/, manifests, tags; blobs.py: blobs, from the cache only where the upstream serves them
relay.py          streaming an upstream response (blobs verified as they pass), relayed refusals
upstream.py       requests with the provider's credential through distribution's one authorized path
credentials.py    provider credentials, kept briefly, one lookup at a time
blobcache.py      content-addressed, digest-verified blob cache with LRU eviction
confirmations.py  which upstream repositories delivered or confirmed a cached blob (kept beside it)
manifestcache.py  manifests in memory within a byte budget: by digest, by tag for a short TTL
errors.py         the registry error JSON and the error middleware
clientauth.py     client auth (token or htpasswd) for non-loopback binds; bcrypt off the event loop
connections.py    client connections: the cap, idle ones closed for room, header-read timeout
metrics.py        Prometheus text; accesslog.py: one secret-free line per request
"""
