"""A rendered report as the tests read it: headless Chromium (the fixture), the DOM's heatmap cells, and checks
that a page is self-contained."""

import os
import re
import struct
from html.parser import HTMLParser

import pytest

from pytest_meshperf.reports import browser

URL_SCHEMES = re.compile(r"\b(?:https?|ftp|wss?|file):|//[a-z0-9-]+\.[a-z]|\burl\(|@import", re.I)
LINKING = ("src", "href", "action", "srcset", "poster", "data", "formaction", "xlink:href")


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium (scripts/setup installs it for the tests); CI must have it, elsewhere skip."""
    try:
        return browser.find_chromium()
    except browser.BrowserError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have chromium: {exc}")
        pytest.skip(str(exc))


class ReportDom(HTMLParser):
    """What a test needs of a rendered report: every heatmap cell, header titles, tags, <html> attributes."""

    def __init__(self, text):
        super().__init__()
        self.heatmaps, self.titles, self.tags, self.root, self.text = {}, set(), [], {}, []
        self._heatmap = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "html":
            self.root = attrs
        if "data-heatmap" in attrs:
            self._heatmap = self.heatmaps.setdefault(attrs["data-heatmap"], {})
        if tag == "td" and "data-src" in attrs:
            self._cell = {"state": attrs["data-state"], "class": attrs.get("class", ""), "text": "",
                          "style": attrs.get("style", ""), "title": attrs.get("title", ""),
                          "finding": attrs.get("data-finding", "")}
            self._heatmap[(attrs["data-src"], attrs["data-dst"])] = self._cell
        if tag == "th" and "title" in attrs:
            self.titles.add(attrs["title"])

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data


class Links(HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.links = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.links += [(tag, name, value) for name, value in attrs if name in LINKING and not value.startswith("#")]


def assert_self_contained(html_text):
    """No external URL anywhere: no linking attribute but in-page anchors, no URL scheme, no CSS url()/@import."""
    assert Links(html_text).links == []
    assert not URL_SCHEMES.search(html_text), URL_SCHEMES.search(html_text).group(0)
    assert "Content-Security-Policy" in html_text and "default-src 'none'" in html_text


def png_size(path):
    with open(path, "rb") as handle:
        head = handle.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return struct.unpack(">II", head[16:24])
