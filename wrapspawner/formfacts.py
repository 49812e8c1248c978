"""The spawn form knows the cluster, live in the browser and again on the server (issue 26).

What :class:`wrapspawner.ProfilesSpawner` adds to its form for profiles whose class reads the Slurm
facts (``cluster_facts = "slurm"``; facts from :class:`batchspawner.polling.cluster.ClusterInfo`, each
profile's from its own cluster, asked as its spawner asks the scheduler: :mod:`wrapspawner.factsource`):

- each ``<option>`` of the partition field carries that partition's maxima (``data-max-cores``,
  ``data-max-mem`` in KiB, ``data-max-time`` in seconds, ``data-max-gpus`` as ``type:count``
  words); each cores / memory / wall-time / GPU input says which of them caps it
  (``data-hpc-limit``) and its own bounds. ``formfacts.js`` (one same-origin file served at
  ``/hub/hpc/formfacts.js``: no inline script, so a strict ``script-src 'self'`` CSP allows it;
  it only sets text and attributes, never HTML) updates the hints ("max 2 cores on jhpc-small"),
  ``min``/``max`` and the GPU types when the partition changes, marks an input above the maximum
  at once (Bootstrap ``is-invalid``, the field's label in the message) and blocks the submission.
  The server checks the same limits (:meth:`ClusterInfo.check`, :func:`check`): 400 naming the field.
- field types ``account`` and ``qos`` (they set ``req_account`` / ``req_qos``, which are otherwise
  admin only): their choices are the user's own associations (``sacctmgr``, cached), "" meaning the
  user's default; anything else is 400. Without an accounting database only the default is allowed.
- field type ``gpu_type`` (sets ``req_gpu_type``: ``--gpus=TYPE:N``): the GPU types of the
  chosen partition's GRES; a type the partition does not have, or more GPUs than one of its nodes
  has, is 400.
- the facts are asked for when the hub makes a Slurm profile spawner (at hub start, for every
  user with a server record) and the first form waits at most ``cluster_wait`` seconds for them;
  without an answer the form says the facts are not known yet (the server then refuses nothing
  over limits: the scheduler judges at submission).
"""

from __future__ import annotations

import asyncio
import hashlib
import os

from jupyterhub import handlers as hub_handlers
from tornado import web

from batchspawner.core.options import SAFE_VALUE, OptionError

from .options import FIELD_TYPES, Field, format_memory, format_walltime

SCRIPT = os.path.join(os.path.dirname(__file__), "templates", "formfacts.js")  # package data
ROUTE = r"/hpc/formfacts.js"
# the request trait a field sets -> the partition maximum that caps it
LIMITS = {"req_nprocs": "cores", "req_memory": "mem", "req_runtime": "time", "req_ngpus": "gpus"}


# ------------------------------------------------------------------ field types
class _ClusterChoice(Field):
    """A choice whose values come from the cluster (checked asynchronously by :func:`check`)."""

    fixed_trait = ""
    assoc_checked = False

    def __init__(self, name, spec):
        super().__init__(name, spec)
        if self.trait != self.fixed_trait:
            raise ValueError(f"field {name!r}: a {self.kind} field sets {self.fixed_trait} only, not {self.trait}")
        if self.default is None:
            self.default = ""

    def _parse(self, text):
        if text and (len(text) > 64 or not SAFE_VALUE.fullmatch(text)):
            self.fail()
        return text


class AccountField(_ClusterChoice):
    kind = "account"
    fixed_trait = "req_account"
    assoc_checked = True  # may set the admin-only req_account: only to one of the user's own accounts
    rule = "must be one of your Slurm accounts (empty: your default account)"


class QosField(_ClusterChoice):
    kind = "qos"
    fixed_trait = "req_qos"
    assoc_checked = True
    rule = "must be a QOS your Slurm account allows (empty: the default)"


class GpuTypeField(_ClusterChoice):
    kind = "gpu_type"
    fixed_trait = "req_gpu_type"
    rule = "must be a GPU type of the chosen partition (empty: any)"


FIELD_TYPES.update({"account": AccountField, "qos": QosField, "gpu_type": GpuTypeField})


# ------------------------------------------------------------------ facts for the form
_asking: dict = {}  # (ClusterInfo id, user) -> the sacctmgr query under way (one per user at a time)


async def associations(info, user: str, bound: float):
    """The user's associations, waiting at most ``bound`` s (the query goes on in the background
    and fills the cache for the next form); None when unknown (no slurmdbd, or no answer yet)."""
    key = (id(info), user)
    task = _asking.get(key)
    if task is None or task.done():
        task = _asking[key] = asyncio.ensure_future(info.user_associations(user))
        task.add_done_callback(lambda t: _asking.pop(key, None) if _asking.get(key) is t else None)
    try:
        return await asyncio.wait_for(asyncio.shield(task), max(bound, 0.05))
    except asyncio.TimeoutError:
        return None


def partition_attrs(part) -> dict:
    """``data-*`` attributes of a partition's ``<option>``: its maxima (absent: no limit)."""
    attrs = {}
    if part.max_cpus_per_node is not None:
        attrs["data-max-cores"] = str(part.max_cpus_per_node)
    if part.max_mem_per_node_mb is not None:
        attrs["data-max-mem"] = str(part.max_mem_per_node_mb * 1024)
    if part.max_time:
        attrs["data-max-time"] = str(part.max_time)
    attrs["data-max-gpus"] = " ".join(f"{kind}:{count}" for kind, count in sorted(part.gpus.items()))
    return attrs


def _bounds(fld) -> tuple[int | None, int | None]:
    return getattr(fld, "min", None), getattr(fld, "max", None)


def input_attrs(fld) -> dict:
    """``data-*`` attributes of a field's input: its kind, own bounds, label and what caps it."""
    limit = LIMITS.get(fld.trait)
    if limit is None or fld.kind not in ("int", "memory", "walltime"):
        return {}
    low, high = _bounds(fld)
    attrs = {"data-hpc-kind": fld.kind, "data-hpc-limit": limit, "data-hpc-label": fld.label}
    if low is not None:
        attrs["data-hpc-min"] = str(low)
    if high is not None:
        attrs["data-hpc-max"] = str(high)
    if fld.kind == "memory":
        attrs["data-hpc-unit"] = fld.unit
    return attrs


def _max_of(part, limit: str, gpu_type: str = "") -> int | None:
    if limit == "cores":
        return part.max_cpus_per_node
    if limit == "mem":
        return part.max_mem_per_node_mb * 1024 if part.max_mem_per_node_mb is not None else None
    if limit == "time":
        return part.max_time or None
    if limit == "gpus":
        return part.gpus.get(gpu_type, 0) if gpu_type else sum(part.gpus.values())
    return None


def _words(limit: str, value: int) -> str:
    if limit == "cores":
        return f"{value} core" + ("" if value == 1 else "s")
    if limit == "mem":
        return format_memory(value)
    if limit == "time":
        hours, rest = divmod(value, 3600)
        return f"{hours} h" if not rest else format_walltime(value)
    return f"{value} GPU" + ("" if value == 1 else "s")


def hint(fld, part) -> str:
    """"max 2 cores on jhpc-small" for ``fld`` on partition ``part`` (the lower of both maxima)."""
    limit = LIMITS.get(fld.trait)
    if part is None or limit is None or fld.kind not in ("int", "memory", "walltime"):
        return ""
    best = _max_of(part, limit)
    own = _bounds(fld)[1]
    if best is None or (own is not None and own < best):
        return ""  # the field's own maximum (in its rule) is the lower one
    return f"max {_words(limit, best)} on {part.name}"


async def first_answers(infos, bound: float) -> None:
    """Start each cluster's refresher and wait for the first rounds together, at most ``bound`` s in all."""
    infos = list({id(i): i for i in infos if i is not None}.values())
    for info in infos:
        info.kick()
    if bound > 0 and infos:
        await asyncio.gather(*(info.first_answer(bound) for info in infos))


async def form_context(spawner, profiles, values: dict) -> dict:
    """What the template needs beyond the fields: per profile key, the partition attributes, hints,
    cluster choices (accounts, QOS, GPU types) and whether the facts are known, each from the
    profile's own cluster (``spawner.cluster_info(profile)``, wrapspawner.factsource)."""
    infos = {p.key: spawner.cluster_info(p) for p in profiles}
    wanted = {id(infos[p.key]): infos[p.key] for p in profiles if infos[p.key] is not None
              and any(isinstance(f, (AccountField, QosField)) for f in p.fields.values())}
    found = await asyncio.gather(*(associations(i, spawner.user.name, spawner.cluster_wait) for i in wanted.values()))
    assoc_of = dict(zip(wanted, found))
    out = {}
    for p in profiles:
        info = infos[p.key]
        partitions = info.partitions if info is not None else {}
        assoc = assoc_of.get(id(info))
        gpu_types: dict[str, list] = {}  # GPU type -> the partitions that have it
        for name, part_info in partitions.items():
            for kind in part_info.gpus:
                if kind:
                    gpu_types.setdefault(kind, []).append(name)
        part_field = next((n for n, f in p.fields.items() if f.trait == "req_partition"), None)
        chosen = values.get(f"{p.key}.{part_field}") if part_field else p.config.get("req_partition")
        part = partitions.get(chosen or "")
        choices = {}
        for name, fld in p.fields.items():
            if isinstance(fld, AccountField):
                choices[name] = {"": "Your default account", **{a: a for a in sorted(assoc or {})}}
            elif isinstance(fld, QosField):
                every = sorted(set().union(*(assoc or {}).values())) if assoc else []
                choices[name] = {"": "Default QOS", **{q: q for q in every}}
            elif isinstance(fld, GpuTypeField):
                choices[name] = {"": "Any GPU", **{k: k for k in sorted(gpu_types)}}
        out[p.key] = {
            "known": bool(info is not None and info.updated_at),
            "partition_field": part_field,
            "described": {name: pi.describe() for name, pi in partitions.items()},
            "options": {name: partition_attrs(pi) for name, pi in partitions.items()},
            "inputs": {name: input_attrs(fld) for name, fld in p.fields.items()},
            "hints": {name: hint(fld, part) for name, fld in p.fields.items()},
            "choices": choices,
            "gpu_partitions": {k: " ".join(sorted(v)) for k, v in gpu_types.items()},
            "account_qos": {a: " ".join(sorted(q)) for a, q in (assoc or {}).items()},
        }
    return out


def script_url(spawner) -> str:
    base = getattr(getattr(spawner, "hub", None), "base_url", None) or "/hub/"
    return f"{base.rstrip('/')}{ROUTE}?v={script_version()}"


# ------------------------------------------------------------------ the server's checks
async def check(spawner, profile, values: dict, slurm: bool) -> None:
    """OptionError naming the field for an account/QOS outside the user's associations, or a GPU
    type / count the chosen partition's GRES does not have (known facts only)."""
    names = {fld.trait: name for name, fld in profile.fields.items()}

    def value(trait):
        if trait in names and values.get(names[trait]) not in (None, ""):
            return str(values[names[trait]])
        return str(profile.config.get(trait) or "")

    info = spawner.cluster_info(profile) if slurm else None  # this profile's own cluster (factsource)
    account, qos = value("req_account"), value("req_qos")
    assoc_fields = [n for n, f in profile.fields.items() if isinstance(f, (AccountField, QosField)) and values.get(n)]
    if assoc_fields:
        assoc = await associations(info, spawner.user.name, spawner.cluster_wait) if info is not None else None
        if assoc is None:
            raise OptionError(assoc_fields[0], "cannot be checked now (the cluster's accounting database does not "
                                               "answer); leave it empty to use your default")
        if "req_account" in names and values.get(names["req_account"]) and account not in assoc:
            raise OptionError(names["req_account"], "is not one of your Slurm accounts: " + ", ".join(sorted(assoc)))
        if "req_qos" in names and values.get(names["req_qos"]):
            allowed = assoc.get(account, set()) if account else set().union(*assoc.values())
            if qos not in allowed:
                where = f"account {account}" if account else "your accounts"
                raise OptionError(names["req_qos"], f"is not a QOS of {where}: " + (", ".join(sorted(allowed)) or "none"))
    part = info.partitions.get(value("req_partition")) if info is not None else None
    if part is None:
        return  # facts not known (yet): the scheduler judges at submission
    gpu_type = value("req_gpu_type")
    if "req_gpu_type" in names and gpu_type and gpu_type not in part.gpus:
        kinds = ", ".join(sorted(k for k in part.gpus if k)) or "none"
        raise OptionError(names["req_gpu_type"], f"is not a GPU type of partition {part.name} (it has: {kinds})")
    ngpus = value("req_ngpus")
    if "req_ngpus" in names and ngpus.isdigit() and int(ngpus) > 0:
        most = _max_of(part, "gpus", gpu_type)
        if int(ngpus) > most:
            what = f"{gpu_type} GPUs" if gpu_type else "GPUs"
            raise OptionError(names["req_ngpus"], f"is more than partition {part.name} allows (at most {most} {what} per node)")


def kick_at_start(spawner, profiles) -> None:
    """Start the background facts query of each Slurm profile's cluster when a profiles spawner is
    made (the hub makes its users' spawners at start), so the first form finds them; never waits.
    Outside an event loop nothing could start: no profile's endpoint is worked out then."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    for p in profiles:
        info = spawner.cluster_info(p) if spawner._is_slurm(p) else None
        if info is not None:
            info.kick()


# ------------------------------------------------------------------ the script
_version = None


def script_source() -> str:
    with open(SCRIPT, encoding="utf-8") as f:
        return f.read()


def script_version() -> str:
    global _version
    if _version is None:
        _version = hashlib.sha256(script_source().encode()).hexdigest()[:12]
    return _version


class FormFactsScript(web.RequestHandler):
    """``GET /hub/hpc/formfacts.js``: the form's script (static, no secrets, no login needed)."""

    def get(self):
        self.set_header("Content-Type", "application/javascript; charset=utf-8")
        self.set_header("Cache-Control", "public, max-age=86400")  # the URL carries its version
        self.set_header("X-Content-Type-Options", "nosniff")
        self.write(script_source())


def register():
    """Add the script's route to the hub's page handlers (idempotent)."""
    if not any(route == ROUTE for route, *_ in hub_handlers.default_handlers):
        hub_handlers.default_handlers.append((ROUTE, FormFactsScript))


register()
