"""What the controlling process asks of its own operating system before it drives a large mesh."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("meshperf")

#: Open files wanted: per node, its SSH socket, its tunnel's listener and, per connection through the tunnel
#: (this process's, its lanes', the keep-alive's, each xdist worker's two), about five (the accepted socket,
#: the SSH channel's pipe, the pump's selector); Debian's soft default of 1024 runs out near 64 nodes.
WANTED_OPEN_FILES = 65536


def raise_open_files_limit(wanted: int = WANTED_OPEN_FILES) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted``, within the hard limit (never lowers it);
    returns (soft before, soft after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # a container may refuse: go on with what there is
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        return soft, target
    return soft, soft
