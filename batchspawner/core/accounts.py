"""Which hub users may run batch jobs at all: never a system account (issue 21).

Every command a spawn runs for a user runs as that user (``sudo -E -u {username}``, ssh as
the user, ...). A hub user named ``root``, ``slurm`` or ``munge`` would therefore submit jobs
(and read files) as that system account. :func:`account_problem` decides, before any command
runs, from two facts the hub host knows:

* the name is in ``denied_users`` (system and service accounts, whatever their uid here);
* the account's uid on this host (NSS: ``/etc/passwd``, LDAP, SSSD) is below ``min_uid``.

A name with no account on this host: its uid cannot be known here.

* commands run on this host (``sudo``): allowed through this check; sudo itself refuses an
  account it cannot resolve, so nothing runs as anyone (the spawn fails with sudo's refusal);
* commands run on another host (``submit_hosts``, an ``ssh`` exec_prefix): refused (fail
  closed: the account there may be a system account) unless the site sets
  ``allow_accounts_unknown_here = True``, saying its remote side refuses system accounts
  itself (then only ``denied_users`` is checked here).
"""

from __future__ import annotations

from pwd import getpwnam as _getpwnam  # bound here: the uid check is its own lookup

# names of system and service accounts on Debian/RHEL-like hosts and HPC daemons; a site adds
# its own (e.g. its scheduler's service account) with ``denied_users``
DEFAULT_DENIED_USERS = frozenset({
    "root", "toor", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "nfsnobody", "_apt", "sshd",
    "messagebus", "systemd-network", "systemd-resolve", "systemd-timesync", "systemd-coredump",
    "polkitd", "postfix", "ntp", "chrony", "_chrony", "statd", "rpc", "rpcuser", "dbus", "adm",
    "operator", "halt", "shutdown", "ftp", "apache", "nginx", "mysql", "postgres",
    "slurm", "munge", "sgeadmin", "pbsadmin", "lsfadmin", "condor", "torque", "maui", "moab",
    "jupyterhub", "apptainer", "singularity", "ldap", "openldap", "sssd", "nslcd", "nscd",
})  # fmt: skip


def lookup_uid(name: str):
    """The uid of ``name`` on this host (NSS), or None when there is no such account."""
    try:
        return _getpwnam(name).pw_uid
    except (KeyError, ValueError, OSError):
        return None


def account_problem(name: str, uid, *, min_uid: int, denied, runs_elsewhere: bool,
                    allow_unknown: bool, cls: str = "BatchSpawnerBase") -> str:
    """Why ``name`` may not run batch jobs ("" when it may). ``uid``: its uid here or None."""
    if name in denied or name.lower() in denied:
        return (f"{name!r} is a system or service account ({cls}.denied_users): batch jobs never run as it. "
                "Log in with your personal account.")
    if uid is not None and uid < min_uid:
        return (f"{name!r} is a system account on this host (uid {uid}, below {cls}.min_uid = {min_uid}): "
                "batch jobs never run as it. Log in with your personal account.")
    if uid is None and runs_elsewhere and not allow_unknown:
        return (f"the account {name!r} is unknown on the hub host, so the hub cannot check that it is not a "
                f"system account, and jobs are submitted on another host. Ask the administrators: the hub "
                f"host must resolve cluster accounts (LDAP/SSSD), or {cls}.allow_accounts_unknown_here = True "
                "if the submit host refuses system accounts itself.")
    return ""
