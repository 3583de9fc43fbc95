"""``regauth proxy``: an auth-injecting, pull-only Registry V2 proxy on aiohttp.

main.py           run_proxy: options, the loopback rule, serving, SIGTERM
app.py            make_proxy_app: routes, middlewares, the shared state (state.py)
routing.py        request -> upstream + repository (prefix host or NAME, ns, Docker Hub); no open proxy
handlers.py       /v2/, manifests (served stale while an upstream is down), tags, referrers
blobs.py          blobs: from the cache only where the upstream serves them, else one fetch shared
flights.py        one upstream fetch per cold blob: the others stream from its file as it grows
sharedcache.py    the S3 bucket shared by instances (boto3): blobs, manifests, confirmations, leases
sharedblobs.py    blobs through the bucket: served where confirmed, fetched by one instance, uploaded
sharedmanifests.py  manifests by digest through the bucket, under the same rule
relay.py          streaming an upstream response (blobs verified as they pass), relayed refusals
upstream.py       requests with the provider's credential through distribution's one authorized path
credentials.py    provider credentials, kept briefly, one lookup at a time
blobcache.py      content-addressed, digest-verified blob cache with LRU eviction
confirmations.py  which upstream repositories delivered or confirmed a cached blob (kept beside it)
manifestcache.py  manifests in memory within a byte budget: by digest, by tag for a short TTL (and stale)
errors.py         the registry error JSON and the error middleware
clientauth.py     client auth (token or htpasswd) for non-loopback binds; bcrypt off the event loop
connections.py    client connections: the cap, idle ones closed for room, header-read timeout
metrics.py        Prometheus text; accesslog.py: one secret-free line per request
"""
