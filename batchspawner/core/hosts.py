"""Execution-host strings as each scheduler prints them, reduced to the first host name.

The hub connects to the first host of a job, so every parser here returns one
name (or "" when the scheduler has not assigned one yet).
"""

from __future__ import annotations

import re

_EMPTY = {"", "-", "n/a", "(null)", "undefined", "none", "None"}

# what a scheduler's "no host yet" looks like, in any case
NO_HOST_WORDS = frozenset(w.lower() for w in _EMPTY)
# one host name or address: DNS labels, IPv4, or IPv6 (optionally in brackets); nothing else
HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?)")


def usable_host(host) -> str:
    """``host`` when it names one host the hub could connect to, else "" (no host yet).

    The one check every scheduler's answer goes through before the hub connects:
    ``n/a`` (Slurm ``%B`` before placement), ``(null)``, ``None``, ``undefined``
    (HTCondor ``RemoteHost``), ``-``, blanks, and anything that is not one host
    name (e.g. the whole query output a 1.3-style ``state_exechost_exp`` returns
    when its regex did not match) all mean "the scheduler named no host".
    """
    text = (host or "").strip() if isinstance(host, str) else ""
    if text.lower() in NO_HOST_WORDS or not HOST_RE.fullmatch(text):
        return ""
    return text.strip("[]")


def pbs_first_host(exec_host: str) -> str:
    """PBS Pro / OpenPBS ``exec_host``: ``node1/0*4+node2/0`` -> ``node1``.

    Each chunk is ``host/index[*ncpus]``, chunks joined with ``+``.
    """
    exec_host = (exec_host or "").strip()
    if exec_host in _EMPTY:
        return ""
    chunk = exec_host.split("+", 1)[0]
    return chunk.split("/", 1)[0].strip()


def torque_first_host(exec_host: str) -> str:
    """Torque ``exec_host``: ``node1/0-3+node2/0,2`` -> ``node1`` (same shape as PBS)."""
    return pbs_first_host(exec_host)


def lsf_first_host(exec_host: str) -> str:
    """LSF ``EXEC_HOST``: ``2*host1:host2``, ``host1:host2`` or ``host1 host2`` -> ``host1``.

    LSF prints ``N*host`` when a host runs N slots of the job, and separates
    hosts with ``:`` in ``bjobs -o`` output (blanks in the long listing).
    """
    exec_host = (exec_host or "").strip()
    if exec_host in _EMPTY:
        return ""
    first = re.split(r"[:\s]+", exec_host, maxsplit=1)[0]
    match = re.match(r"^\d+\*(.+)$", first)
    return match.group(1) if match else first


def condor_host(remote_host: str) -> str:
    """HTCondor ``RemoteHost``: ``slot1@host.domain`` or ``slot1_2@host`` -> the host part."""
    remote_host = (remote_host or "").strip().strip('"')
    if remote_host in _EMPTY:
        return ""
    return remote_host.rsplit("@", 1)[-1]


def moab_first_host(alloc_node_list: str) -> str:
    """Moab ``AllocNodeList``: ``node1,node2`` or ``node1:4,node2:2`` -> ``node1``."""
    alloc_node_list = (alloc_node_list or "").strip()
    if alloc_node_list in _EMPTY:
        return ""
    return re.split(r"[,\s]", alloc_node_list, maxsplit=1)[0].split(":", 1)[0]
