#!/usr/bin/env python3
"""Prints the machine's own Debian apt source entries with the non-free component added.

netperf is in Debian's non-free component, which a default install does not
enable.  scripts/setup hands this output to apt-get as a separate source list
(-o Dir::Etc::sourceparts / Dir::State::Lists), so the machine's apt
configuration is never changed and no registry host is written in this repository.

Reads deb822 files (/etc/apt/sources.list.d/*.sources) and one-line lists
(/etc/apt/sources.list, /etc/apt/sources.list.d/*.list).
Usage: nonfree_sources.py DEB822_OUT [APT_DIR]   (writes DEB822_OUT; APT_DIR defaults to /etc/apt;
exit 1 if no enabled 'deb ... main' entry was found)
"""

import glob
import sys

APT = "/etc/apt"


def deb822_stanzas(text):
    """Stanzas as lists of (field, value) lines; comments dropped, continuation lines kept."""
    stanzas, current = [], []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current = []
        elif line[0] in " \t" and current:
            current[-1] = (current[-1][0], current[-1][1] + "\n" + line)
        elif ":" in line:
            field, value = line.split(":", 1)
            current.append((field.strip(), value.strip()))
    if current:
        stanzas.append(current)
    return stanzas


def with_non_free(components):
    return components if "non-free" in components else components + ["non-free"]


def from_deb822(text):
    out = []
    for stanza in deb822_stanzas(text):
        fields = {k.lower(): v for k, v in stanza}
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        components = fields.get("components", "").split()
        if "main" not in components:
            continue
        lines = ["Types: deb"]
        for field, value in stanza:
            if field.lower() == "types":
                continue
            if field.lower() == "components":
                value = " ".join(with_non_free(components))
            lines.append(f"{field}: {value}")
        out.append("\n".join(lines))
    return out


def from_one_line(text):
    """'deb [opts] URI SUITE COMPONENTS...' -> the same entry in deb822."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        options = []
        if words and words[0].startswith("["):
            while words:
                word = words.pop(0)
                options.append(word.strip("[]"))
                if word.endswith("]"):
                    break
        if len(words) < 3 or "main" not in words[2:]:
            continue
        lines = ["Types: deb", f"URIs: {words[0]}", f"Suites: {words[1]}",
                 f"Components: {' '.join(with_non_free(words[2:]))}"]
        for option in filter(None, options):
            key, _, value = option.partition("=")
            if key.lower() == "signed-by":
                lines.append(f"Signed-By: {value}")
        out.append("\n".join(lines))
    return out


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit("usage: nonfree_sources.py DEB822_OUT [APT_DIR]")
    apt = argv[2] if len(argv) == 3 else APT
    entries = []
    for path in sorted(glob.glob(apt + "/sources.list.d/*.sources")):
        with open(path) as handle:
            entries += from_deb822(handle.read())
    for path in [apt + "/sources.list"] + sorted(glob.glob(apt + "/sources.list.d/*.list")):
        try:
            with open(path) as handle:
                entries += from_one_line(handle.read())
        except OSError:
            pass
    if not entries:
        sys.exit(f"nonfree_sources.py: no enabled 'deb ... main' entry in {apt}/sources.list or {apt}/sources.list.d/; "
                 "add Debian's non-free component by hand and install netperf")
    with open(argv[1], "w") as handle:
        handle.write("\n\n".join(entries) + "\n")


if __name__ == "__main__":
    main(sys.argv)
