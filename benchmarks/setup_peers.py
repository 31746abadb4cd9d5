"""Install the peer libraries, each into its own directory under ``benchmarks/.peers``.

Every library gets its own ``pip install --target`` directory, per interpreter
(``.peers/cp311/websockets``, ...), so none shadows another or this checkout's
``lomond`` (lomond 0.3.4 is also called ``lomond``). ``run.py`` calls
:func:`ensure_peers` on every run, which installs only what is missing or was
installed from a different specification; run this script by hand to install (or
with ``--force``, to reinstall) ahead of time::

    python benchmarks/setup_peers.py [--force]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
PEERS_ROOT = BENCHMARKS / ".peers"
MARKER = ".installed.json"

#: Directory name -> what ``pip install --target`` installs there. Versions are pinned
#: so that results stay comparable; bump them deliberately.
PEERS: dict[str, list[str]] = {
    "websocket-client": ["websocket-client==1.9.2"],
    "wsaccel": ["wsaccel==0.6.7"],
    # The newest release for each Python (17.x needs 3.11; the sync client exists since 12).
    "websockets": [
        "websockets==17.4; python_version >= '3.11'",
        "websockets==16.1.1; python_version == '3.10'",
        "websockets==15.0.1; python_version == '3.9'",
        "websockets==13.1; python_version < '3.9'",
    ],
    "lomond-0.3.4": ["lomond==0.3.4"],  # brings six with it
    # This checkout's own runtime dependency: the checkout itself is used in place.
    "lomond-deps": ["certifi"],
}


def peers_dir(python_tag: str | None = None) -> Path:
    """The directory of this interpreter's peers (compiled wheels differ per version)."""
    if python_tag is None:
        python_tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return PEERS_ROOT / python_tag


def library_path(name: str) -> Path:
    """Where the peer called ``name`` is installed."""
    return peers_dir() / name


def is_installed(name: str) -> bool:
    marker = library_path(name) / MARKER
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")) == PEERS[name])
    except (OSError, ValueError):
        return False


def install(name: str) -> None:
    """(Re)install one peer into a fresh directory.

    Raises:
        subprocess.CalledProcessError: pip failed.
    """
    target = library_path(name)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--root-user-action=ignore",
        "--target",
        str(target),
        *PEERS[name],
    ]
    print(f"installing {' '.join(PEERS[name])} into {target}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    (target / MARKER).write_text(json.dumps(PEERS[name]), encoding="utf-8")


def ensure_peers(names: list[str] | None = None, force: bool = False) -> list[str]:
    """Install every peer in ``names`` (default: all) that is missing or outdated.

    Returns:
        The peers that could not be installed (pip failed: for example, no release
        for this Python version); pip's own message has gone to stderr.
    """
    failed = []
    for name in names if names is not None else list(PEERS):
        if force or not is_installed(name):
            try:
                install(name)
            except subprocess.CalledProcessError:
                print(f"could not install {name}", file=sys.stderr, flush=True)
                failed.append(name)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="reinstall every peer")
    options = parser.parse_args(argv)
    failed = ensure_peers(force=options.force)
    if failed:
        print(f"not installed: {', '.join(failed)}")
        return 1
    print(f"peers ready in {peers_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
