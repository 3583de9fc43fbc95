"""The kubelet's image credential provider plugin (``regauth-credential-provider``) and its configuration.

``wire`` is the exec protocol (``credentialprovider.kubelet.k8s.io``: the request, the response, Go
durations), ``matching`` the kubelet's rules for matching an image against ``matchImages`` and auth keys,
``answer`` what regauth answers for one image (through ``providers.routing``, as the helper's ``get``),
``main`` the process edge, and ``kubeletconfig`` writes the kubelet's ``CredentialProviderConfig``.
"""
