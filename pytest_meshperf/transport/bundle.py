"""The agent as one file: a deterministic zip application of the code a node runs.

It holds ``pytest_meshperf/__init__.py``, ``agent/`` and ``tools/`` (standard
library only) and runs as ``python3 agent.pyz``: ``agent/boot.py`` checks the node and the shipped
files, then runs the agent in the same process.  The same code gives the same
bytes (fixed timestamps, sorted entries), so its SHA-256 names the deployed
version and a second deploy of it transfers nothing.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass

from pytest_meshperf import PACKAGE_DIR as _PACKAGE_DIR
from pytest_meshperf import __version__

_SHIPPED = ("__init__.py", "agent", "tools")
# Imports come from the bytecode-cached copy of these very bytes when boot.py has made one (lib_dir), else from
# the zip, whose modules Python compiles again on every start.  Decided before any package module is imported.
_MAIN = b"""import hashlib, os, sys
with open(sys.argv[0], "rb") as handle:
    lib = os.path.join(os.path.dirname(sys.argv[0]), "lib-" + hashlib.sha256(handle.read()).hexdigest()[:16])
if os.path.isdir(lib):
    sys.path.insert(0, lib)
from pytest_meshperf.agent.boot import main
sys.exit(main())
"""
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    data: bytes
    sha256: str

    @property
    def version_dir(self) -> str:
        """Directory name on the node: the meshperf version and the bundle's hash."""
        return f"{__version__}-{self.sha256[:12]}"


def _files():
    for entry in _SHIPPED:
        path = os.path.join(_PACKAGE_DIR, entry)
        if os.path.isfile(path):
            yield path, "pytest_meshperf/" + entry
            continue
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(names):
                if name.endswith(".py"):
                    full = os.path.join(root, name)
                    yield full, "pytest_meshperf/" + os.path.relpath(full, _PACKAGE_DIR).replace(os.sep, "/")


_cache = None


def build() -> Bundle:
    global _cache
    if _cache is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(zipfile.ZipInfo("__main__.py", _EPOCH), _MAIN)
            for path, arcname in sorted(_files(), key=lambda item: item[1]):
                with open(path, "rb") as handle:
                    info = zipfile.ZipInfo(arcname, _EPOCH)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, handle.read())
        data = buffer.getvalue()
        _cache = Bundle(data, hashlib.sha256(data).hexdigest())
    return _cache


def boot_source() -> str:
    """``agent/boot.py`` as text: sent as ``python3 -I -S -c`` to check nodes that may have no bundle yet."""
    with open(os.path.join(_PACKAGE_DIR, "agent", "boot.py"), encoding="utf-8") as handle:
        return handle.read()
