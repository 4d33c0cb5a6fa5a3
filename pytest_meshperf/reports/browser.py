"""Headless Chromium for reports: the DOM a page builds (tests read it) and PNG screenshots (docs, sharing).

Chromium runs with a new empty profile and every background service off, so it opens the file and
nothing else (as root it needs --no-sandbox).  Each run is bounded in time and, being a session
leader, is killed with all its helper processes when it ends or times out.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_meshperf.errors import UsageError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--hide-scrollbars", "--mute-audio")
TIMEOUT_S = 60.0
MAX_PNG_HEIGHT = 8000      # pixels; a report of many tests is cut there (the HTML has all of it)


class BrowserError(UsageError):
    """Chromium is missing, failed, or took too long; the message says what to do."""


def find_chromium(explicit: str | None = None) -> str:
    """The Chromium to run: ``explicit`` (a path or name), $MESHPERF_CHROMIUM, or one on PATH."""
    wanted = explicit or os.environ.get("MESHPERF_CHROMIUM")
    for name in ([wanted] if wanted else CHROMIUM_NAMES):
        found = shutil.which(name)
        if found:
            return found
    if wanted:
        raise BrowserError(f"chromium {wanted!r}: not found or not executable; give the path of a Chromium binary")
    raise BrowserError(f"chromium not found on PATH (looked for {', '.join(CHROMIUM_NAMES)}); install it: apt-get "
                       "install chromium (Debian), or set MESHPERF_CHROMIUM to its path")


def page_url(html_path: str, fragment: str = "") -> str:
    return Path(html_path).resolve().as_uri() + (("#" + fragment) if fragment else "")


def run_chromium(args: Sequence[str], chromium: str | None = None, timeout_s: float = TIMEOUT_S) -> str:
    """Run headless Chromium with ``args`` after the fixed flags; its standard output."""
    binary = find_chromium(chromium)
    with tempfile.TemporaryDirectory(prefix="meshperf-chromium-") as profile:
        command = [binary, *FLAGS, "--user-data-dir=" + profile, *args]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.communicate()
            raise BrowserError(f"chromium did not finish within {timeout_s:.0f} s ({' '.join(args[-1:])})")
        finally:
            _kill_group(process.pid)   # renderer and zygote helpers go with it
    if process.returncode != 0:
        last = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()][-1:]
        raise BrowserError(f"chromium failed (exit status {process.returncode}){': ' + last[0] if last else ''}")
    return out.decode("utf-8", "replace")


def _kill_group(pid: int):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def dump_dom(html_path: str, width: int = 1600, height: int = 1200, fragment: str = "", **kwargs: Any) -> str:
    """The page's DOM after its scripts ran, serialized (what ``chromium --dump-dom`` prints)."""
    return run_chromium([f"--window-size={width},{height}", "--dump-dom", page_url(html_path, fragment)],
                        **kwargs)


def screenshot(html_path: str, png_path: str, width: int, height: int, fragment: str = "", **kwargs: Any) -> str:
    """A PNG of the page's top ``width`` x ``height`` pixels."""
    png_path = os.path.abspath(png_path)
    if os.path.exists(png_path):
        os.unlink(png_path)
    run_chromium([f"--window-size={width},{height}", "--screenshot=" + png_path,
                  page_url(html_path, fragment)], **kwargs)
    if not os.path.isfile(png_path):
        raise BrowserError(f"chromium wrote no screenshot to {png_path}")
    return png_path


DEFAULT_WIDTH = 1280
MAX_WIDTH = 2400


def _page_sizes(dom: str):
    """(width that fits the widest heatmap and its details, page height) that report.js put on <html>."""
    head = dom[:dom.find(">") + 1] if dom.startswith("<html") else dom[:4000]
    found = {name: int(value) for name, value in re.findall(r'data-(fit-width|page-height)="(\d+)"', head)}
    return found.get("fit-width", 0), found.get("page-height", 0)


def full_page_screenshot(html_path: str, png_path: str, width: int | None = None, height: int | None = None,
                         fragment: str = "", **kwargs: Any) -> tuple[str, tuple[int, int]]:
    """A PNG of the page: as wide as the heatmaps need and the whole page high (up to MAX_PNG_HEIGHT), unless
    ``width`` or ``height`` are given.  Chromium's --screenshot takes the window: the page is loaded once
    first to learn its size."""
    for name, value in (("width", width), ("height", height)):
        if value is not None and not 200 <= value <= MAX_PNG_HEIGHT:
            raise BrowserError(f"--png-{name} {value}: give 200 to {MAX_PNG_HEIGHT} pixels")
    probe = width or DEFAULT_WIDTH
    fit, page_height = _page_sizes(dump_dom(html_path, probe, 600, fragment, **kwargs))
    if width is None and fit > probe:
        probe = min(fit, MAX_WIDTH)
        fit, page_height = _page_sizes(dump_dom(html_path, probe, 600, fragment, **kwargs))
    if not page_height:
        raise BrowserError(f"{html_path}: not a meshperf report (its script reported no page size)")
    size = (probe, height or min(page_height, MAX_PNG_HEIGHT))
    return screenshot(html_path, png_path, size[0], size[1], fragment, **kwargs), size
