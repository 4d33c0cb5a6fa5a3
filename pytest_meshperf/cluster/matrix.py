"""``--matrix clients.txt servers.txt``: two address lists turned into a cluster.

Each file lists one host per line: an IP address, a DNS name or an ssh_config
alias; ``#`` starts a comment, blank lines are ignored.  Every client is
measured against every server: a host only in the clients file gets role
``client``, only in the servers file ``server``, in both ``both`` (one node,
never paired with itself).  The nodes are the same ``Node`` objects a
hosts.yaml gives, without SSH settings of their own: ssh_config and the
defaults supply user, port and key, and a loopback IP address gets a local
agent (no SSH), like the embedded cluster.

Every mistake is one ``InventoryError`` line naming ``file:line``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pytest_meshperf.cluster.fields import address_problem
from pytest_meshperf.cluster.model import Cluster, Node
from pytest_meshperf.errors import InventoryError

_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
LIST_HELP = "one IP address, DNS name or ssh_config alias per line ('#' starts a comment)"


@dataclass(frozen=True)
class Entry:
    """One host of an address list, where it was written."""

    address: str
    shown: str      # the file as the user gave it
    line: int

    @property
    def where(self) -> str:
        return f"{self.shown}:{self.line}"


def read_list(shown: str, base_dir: str) -> list[Entry]:
    """The hosts of one list file, in order; InventoryError for an unreadable file, a bad line, a duplicate."""
    path = os.path.abspath(os.path.join(base_dir, os.path.expanduser(shown)))
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise InventoryError(f"--matrix {shown}: no such file ({path}); give a text file with {LIST_HELP}")
    except IsADirectoryError:
        raise InventoryError(f"--matrix {shown}: is a directory; give a text file with {LIST_HELP}")
    except UnicodeDecodeError as err:
        raise InventoryError(f"--matrix {shown}: is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                             f"{err.start}); save it as UTF-8 text")
    except OSError as err:
        raise InventoryError(f"--matrix {shown}: cannot read the file ({err.strerror or type(err).__name__}); check "
                             "its permissions")
    entries: list[Entry] = []
    seen: dict[str, Entry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        entry = Entry(words[0], shown, number)
        if len(words) > 1:
            raise InventoryError(f"{entry.where}: {' '.join(words)!r} is more than one word; give {LIST_HELP}")
        problem = address_problem(entry.address)
        if problem:
            what, fix = problem
            if "@" in entry.address:  # user@host: the user belongs in ssh_config
                fix += " without a user: set User (and Port, IdentityFile) in ssh_config (--ssh-config)"
            raise InventoryError(f"{entry.where}: {what}; {fix}")
        first = seen.get(entry.address.lower())   # host names are case-insensitive
        if first is not None:
            raise InventoryError(f"{entry.where}: {entry.address!r} is listed twice (first at line {first.line}); list "
                                 "each host once")
        seen[entry.address.lower()] = entry
        entries.append(entry)
    if not entries:
        raise InventoryError(f"--matrix {shown}: lists no host (only comments or blank lines); give {LIST_HELP}")
    return entries


def node_name(address: str) -> str:
    """The node's name in test ids and results: the address itself, other characters (IPv6 ':') as '_'."""
    return _NOT_NAME_CHARS.sub("_", address)


def load_matrix(clients: str, servers: str, base_dir: str | os.PathLike[str] = ".") -> Cluster:
    """The cluster of ``--matrix CLIENTS SERVERS``: every client against every server."""
    base_dir = os.fspath(base_dir)
    client_entries, server_entries = read_list(clients, base_dir), read_list(servers, base_dir)
    server_keys = {entry.address.lower() for entry in server_entries}
    client_keys = {entry.address.lower() for entry in client_entries}
    ordered = [(e, "both" if e.address.lower() in server_keys else "client") for e in client_entries]
    ordered += [(e, "server") for e in server_entries if e.address.lower() not in client_keys]
    nodes, named = [], {}
    for entry, role in ordered:
        name = node_name(entry.address)
        other = named.setdefault(name.lower(), entry)
        if other is not entry:
            raise InventoryError(f"{entry.where}: {entry.address!r} and {other.address!r} ({other.where}) would both "
                                 f"be node {name!r}; list each host once, under one spelling")
        try:
            nodes.append(Node(name=name, address=entry.address, role=role))
        except InventoryError as exc:
            raise InventoryError(f"{entry.where}: {exc}")
    if len(nodes) < 2:
        raise InventoryError(f"--matrix {clients} {servers}: {nodes[0].address} is the only host, and a host is never "
                             "measured against itself; add another client or server")
    return Cluster(kind="matrix", spec=f"matrix:{clients},{servers}", nodes=tuple(nodes))
