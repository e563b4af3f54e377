"""Set up the engine's environment from a command line, as the plugin's *Set up the engine* does.

python3 -m mus_qgis.bridge setup --root FOLDER [--plan] [--torch cpu] ...

Runs on any Python 3.9+ (the set-up downloads the engine's own Python); nothing else needed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..shared.progress import LoggingProgress
from .environment import SetupError, SetupOptions, setup


def default_cache_dir() -> Path:
    """The engine's cache folder, as its command line has it (MUS_QGIS_CACHE, or the user's)."""
    configured = os.environ.get("MUS_QGIS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "mus_qgis"


def cmd_setup(args) -> int:
    options = SetupOptions(
        root=args.root,
        base_python=args.base_python,
        torch=args.torch,
        torch_index=args.torch_index,
        wheel_folder=args.wheel_folder,
        offline=args.offline,
        force=args.force,
        # Relative to where the command was typed: the set-up runs its tools elsewhere.
        extra_requirements=[str(Path(f).resolve()) for f in args.extra_requirements or []],
        index_url=args.index_url,
        cache_dir=str(args.cache_dir or default_cache_dir()),
        plan_only=args.plan,
        python_version=args.python_version,
    )
    progress = LoggingProgress()
    logging.getLogger("mus_qgis").setLevel(logging.INFO)
    try:
        record = setup(options, progress)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(record.get("python") or "(plan only: nothing was installed)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m mus_qgis.bridge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="set up the engine environment in a folder")
    setup.add_argument("--root", type=Path, required=True, help="folder of the environment")
    setup.add_argument("--base-python", default="", help="Python to create it from")
    setup.add_argument(
        "--torch",
        default="auto",
        help="auto, default (PyPI's build), cpu, cuda, or a build of PyTorch's index (cu128)",
    )
    setup.add_argument("--torch-index", default="", help="package index for torch")
    setup.add_argument("--index-url", default="", help="package index (default: PyPI)")
    setup.add_argument("--cache-dir", type=Path, default=None, help="uv's cache folder")
    setup.add_argument(
        "--python-version", default="", help="the standalone CPython to download (uv; 3.12)"
    )
    setup.add_argument(
        "--plan", action="store_true", help="say what would be installed and its size, only"
    )
    setup.add_argument(
        "--wheel-folder", default="", help="a folder (or find-links URL) of wheels to install from"
    )
    setup.add_argument("--offline", action="store_true", help="only the wheel folder")
    setup.add_argument("--force", action="store_true", help="set up again even if unchanged")
    setup.add_argument(
        "--extra-requirements", action="append", help="another requirements file to install"
    )
    setup.set_defaults(run=cmd_setup)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
