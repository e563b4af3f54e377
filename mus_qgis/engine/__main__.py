"""``python -m mus_qgis.engine``: the engine's command line, and the worker QGIS starts."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "worker":
    # The worker imports only its loop at start, so that it answers "ready" at once.
    import argparse

    from ..shared.protocol import DEFAULT_IDLE_TIMEOUT_S
    from .worker.server import serve

    parser = argparse.ArgumentParser(prog="python -m mus_qgis.engine worker")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S)
    sys.exit(serve(parser.parse_args(sys.argv[2:]).idle_timeout))

from .cli import main

sys.exit(main())
