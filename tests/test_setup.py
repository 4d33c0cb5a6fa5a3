"""scripts/nonfree_sources.py: the apt source scripts/setup installs netperf from, derived from the machine's own
Debian entries (deb822 and one-line formats) with the non-free component added."""

import subprocess
import sys

from support.paths import ROOT

SCRIPT = ROOT / "scripts" / "nonfree_sources.py"


def derive(apt_dir, out):
    return subprocess.run([sys.executable, str(SCRIPT), str(out), str(apt_dir)], capture_output=True, text=True,
                          timeout=30)


def test_deb822_and_one_line_entries_get_non_free(tmp_path):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/off\nSuites: bookworm\nComponents: main\nEnabled: no\n")
    (apt / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian-security "
        "bookworm-security main contrib\n# deb http://commented.example/debian bookworm main\n"
        "deb-src http://mirror.example/debian bookworm main\ndeb http://other.example/x stable extras\n")
    out = tmp_path / "out.sources"
    result = derive(apt, out)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main contrib non-free\nSigned-By: /usr/share/keyrings/k.gpg\n")


def test_no_debian_entry_is_a_one_line_error(tmp_path):
    (tmp_path / "apt").mkdir()
    result = derive(tmp_path / "apt", tmp_path / "out.sources")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"nonfree_sources.py: no enabled 'deb ... main' entry in {tmp_path / 'apt'}/sources.list or {tmp_path / 'apt'}"
        "/sources.list.d/; add Debian's non-free component by hand and install netperf"]
