"""Coverage-guided fuzzing of regauth's parsers with atheris (libFuzzer), for as long as it is let run.

    .venv/bin/pip install -e '.[fuzz]'
    .venv/bin/python tests/fuzz/fuzz.py challenge -max_total_time=60
    .venv/bin/python tests/fuzz/fuzz.py reference -max_total_time=60
    .venv/bin/python tests/fuzz/fuzz.py helper -max_total_time=60

The first argument names the target (see ``TARGETS``); the rest go to libFuzzer (``-help=1`` lists
them). Unless given, ``-dict=`` is the target's ``.dict`` file here, ``-timeout=10`` makes an input
that runs ten seconds a finding, and the corpus is a scratch directory grown from ``seeds/TARGET``;
to keep a corpus between runs, name it first: ``fuzz.py helper corpus-helper tests/fuzz/seeds/helper``.
A failure stops the run, prints the traceback and writes the input to ``crash-<sha1>`` (``timeout-``
for a slow one) in the current directory; replay it with ``fuzz.py TARGET crash-<sha1>``. The checks
are those of the property tests (``targets.py``); the helper target runs the verbs in-process against
a store in a scratch directory and never reads the real HOME. The fuzzing runs in a child process
so that its scratch directory (``regauth-fuzz-*`` under the temp dir) is removed however it ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable

try:
    import atheris
except ImportError:
    sys.exit("fuzz.py: atheris is not installed; install it with: .venv/bin/pip install -e '.[fuzz]'")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

with atheris.instrument_imports(include=["regauth"]):
    import targets

    # The helper imports most of its path lazily; imported here, it is instrumented too.
    import regauth.helper.backend  # noqa: F401
    import regauth.helper.fastget  # noqa: F401
    import regauth.helper.protocol  # noqa: F401


def _text(data: bytes) -> str:
    # As both edges decode: aiohttp a header value, Python sys.argv (lone surrogates for bad bytes).
    return data.decode("utf-8", "surrogateescape")


def fuzz_challenge(data: bytes) -> None:
    targets.check_challenge(_text(data))


def fuzz_reference(data: bytes) -> None:
    targets.check_reference(_text(data))


def fuzz_helper(data: bytes) -> None:
    # The first byte picks the verb; the rest is stdin, raw bytes (invalid UTF-8 included).
    if not data:
        return
    targets.check_helper(targets.ACTIONS[data[0] % len(targets.ACTIONS)], data[1:])


def _helper_setup(scratch: str) -> None:
    home = os.path.join(scratch, "home")
    os.mkdir(home)
    targets.isolate(home)


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[str], None] | None]] = {
    "challenge": (fuzz_challenge, None),
    "reference": (fuzz_reference, None),
    "helper": (fuzz_helper, _helper_setup),
}
# Set in the child that fuzzes: the scratch directory its parent made and removes.
SCRATCH_VARIABLE = "FUZZ_SCRATCH"


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.stderr.write(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]\n")
        return 2
    scratch = os.environ.get(SCRATCH_VARIABLE)
    if scratch is None:
        return _supervise()
    name = sys.argv.pop(1)
    target, setup = TARGETS[name]
    if setup is not None:
        setup(scratch)
    args = list(sys.argv)
    if not any(arg.startswith("-dict=") for arg in args):
        args.append(f"-dict={os.path.join(HERE, name + '.dict')}")
    if not any(arg.startswith("-timeout=") for arg in args):
        # libFuzzer waits 20 minutes by default; an input that takes seconds is a finding (backtracking).
        args.append("-timeout=10")
    if not any(not arg.startswith("-") for arg in args[1:]):
        # No corpus and no input to replay: grow a scratch corpus from the seeds (libFuzzer writes
        # into the first directory only, so the seeds stay as they are).
        corpus = os.path.join(scratch, "corpus")
        os.mkdir(corpus)
        args += [corpus, os.path.join(HERE, "seeds", name)]
    atheris.Setup(args, target)
    atheris.Fuzz()
    return 0


def _supervise() -> int:
    """Fuzz in a child process and remove its scratch directory after it: libFuzzer ends the
    process from C, where no Python clean-up runs."""
    scratch = tempfile.mkdtemp(prefix="regauth-fuzz-")
    try:
        env = {**os.environ, SCRATCH_VARIABLE: scratch}
        return subprocess.run([sys.executable, *sys.argv], env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
