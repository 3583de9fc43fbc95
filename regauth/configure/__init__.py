"""``regauth configure CLIENT``, ``regauth import`` and ``regauth doctor``: the clients' own files.

Each client module (``docker``, ``podman``, ``containerd``, ``systemd``) only says what its files should
hold: a ``Plan`` of file changes. ``core`` does the rest the same way for all of them: a diff for
``--dry-run``, atomic writes that keep mode and owner and follow a symbolic link to its target, a
timestamped backup of what was replaced, "nothing to change" on a second run, and ``--undo``.
"""
