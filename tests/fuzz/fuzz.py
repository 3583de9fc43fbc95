"""Coverage-guided fuzzing of regauth's parsers with atheris (libFuzzer), for as long as it is let run.

    pip install -e '.[fuzz]'
    .venv/bin/python tests/fuzz/fuzz.py challenge -max_total_time=60
    .venv/bin/python tests/fuzz/fuzz.py reference -max_total_time=60
    .venv/bin/python tests/fuzz/fuzz.py helper -max_total_time=60

The first argument names the target (see ``TARGETS``); the rest go to libFuzzer (``-help=1`` lists
them; a directory argument is a corpus it reads and extends). A crash stops the run, prints the
traceback and writes the input to ``crash-<sha1>``; replay it with ``fuzz.py TARGET crash-<sha1>``.
The checks are those of the property tests (``targets.py``); the helper target runs the verbs
in-process against a store in a scratch directory that is removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable

import atheris

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


def _helper_setup() -> None:
    scratch = tempfile.mkdtemp(prefix="regauth-fuzz-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    targets.isolate(scratch)


TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], None] | None]] = {
    "challenge": (fuzz_challenge, None),
    "reference": (fuzz_reference, None),
    "helper": (fuzz_helper, _helper_setup),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.stderr.write(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]\n")
        sys.exit(2)
    name = sys.argv.pop(1)
    target, setup = TARGETS[name]
    if setup is not None:
        setup()
    args = list(sys.argv)
    if not any(arg.startswith("-dict=") for arg in args):
        args.append(f"-dict={os.path.join(HERE, name + '.dict')}")
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
