"""Container images (Apptainer/Singularity) as a profile field, with typed arguments from labels.

An admin curates images in a folder and gives a profile a ``container``::

    {"key": "containers", "class": "batchspawner.SlurmSpawner",
     "container": {"dir": "/opt/images", "binds": ["/opt/jupyterhub-hpc", "/scratch"]},
     ...}

The form then offers a field ``image`` listing the folder's images (``*.sif`` files and
sandbox directories). An image may declare typed arguments in its labels: every label whose
key ends in ``_ARG_STR``, ``_ARG_INT``, ``_ARG_FLOAT`` or ``_ARG_BOOL`` lists (comma or space
separated) names of arguments of that type, e.g. ``ANALYSIS_ARG_INT="threads"``. They become
fields of the form and options of the REST API (``{"profile": "containers", "image":
"analysis.sif", "threads": 4}``), validated by the same :mod:`wrapspawner.options` fields as
any other, and reach the image as named arguments: ``apptainer exec --env NAME=VALUE``. Nothing
an image did not declare passes (HTTP 400 naming the field).

The job runs ``batchspawner-singleuser apptainer exec [--bind B]... [--nv] [--env N=V]... IMAGE
jupyterhub-singleuser ...``: the wrapper reports the port from the node, then the server runs
inside the image (the binds must make the hub's venv visible there). ``--nv`` is added when the
child requests GPUs (``req_ngpus`` above zero).

Labels are read with ``apptainer inspect --json`` by the hub, in the background, cached per
image (path, mtime, size) and refreshed at most every ``refresh`` seconds: rendering the form
or validating options never waits on apptainer, except once for the very first listing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from dataclasses import dataclass, field

from batchspawner.core.options import SAFE_VALUE, OptionError
from batchspawner.polling.base import SharedPoller
from batchspawner.commands.runner import CommandError, CommandRunner

from .options import ChoiceField, Field, IntField, NAME_RE, TextField

ARG_LABEL_RE = re.compile(r"_ARG_(STR|INT|FLOAT|BOOL)$")
CONTAINER_KEYS = {"dir", "apptainer", "binds", "field", "label", "refresh", "inspect_timeout", "extensions"}


class FloatField(Field):
    kind = "float"
    rule = "must be a decimal number such as 0.5 or 12 (no exponent, at most 9 digits either side of the point)"

    def _parse(self, text):
        if not re.fullmatch(r"-?[0-9]{1,9}(\.[0-9]{1,9})?", text):
            self.fail()
        return repr(float(text))


class BoolField(ChoiceField):
    kind = "choice"

    def __init__(self, name, spec):
        super().__init__(name, dict(spec, choices={"true": "yes", "false": "no"}))

    def _parse(self, text):
        low = text.lower()
        if low in ("true", "yes", "1", "on"):
            return "true"
        if low in ("false", "no", "0", "off"):
            return "false"
        self.fail()


def arg_field(name: str, kind: str) -> Field:
    """The form/REST field for an argument an image declared."""
    spec = {"label": name.replace("_", " "), "help": f"Declared by the image ({kind.lower()})."}
    if kind == "INT":
        return IntField(name, spec)
    if kind == "FLOAT":
        return FloatField(name, spec)
    if kind == "BOOL":
        return BoolField(name, spec)
    return TextField(name, dict(spec, regex=r"[A-Za-z0-9_.:@%+=/-]+", max_length=128))  # no ',': --env splits on it


def declared_args(labels: dict) -> dict[str, str]:
    """``{name: kind}`` from labels ending in ``_ARG_<KIND>``; ValueError for a bad declaration."""
    args: dict[str, str] = {}
    for key, value in sorted((labels or {}).items()):
        match = ARG_LABEL_RE.search(str(key))
        if not match:
            continue
        for name in re.split(r"[\s,]+", str(value).strip()):
            if not name:
                continue
            if not NAME_RE.fullmatch(name) or name == "profile":
                raise ValueError(f"label {key}: argument name {name!r} is not a lower-case identifier")
            if name in args and args[name] != match.group(1):
                raise ValueError(f"argument {name!r} is declared as both {args[name]} and {match.group(1)}")
            args[name] = match.group(1)
    return args


@dataclass
class Image:
    name: str  # file name in the folder: the value users choose
    path: str
    args: dict = field(default_factory=dict)  # name -> Field
    error: str = ""  # why the image is not offered (bad labels, inspect failed)
    stamp: tuple = ()


class ImageCatalog(SharedPoller):
    """The images of one folder and their declared arguments, inspected in the background.

    One per folder and settings (the registry of :class:`batchspawner.polling.base.SharedPoller`,
    which also gives the clock and stop_all()); refreshed on demand, not by a background loop."""

    name = "container images"

    @classmethod
    def shared(cls, directory, apptainer, refresh, timeout, extensions, log=None):
        key = (directory, tuple(apptainer), refresh, timeout, tuple(extensions))
        return cls.for_key(key, directory, apptainer, refresh, timeout, extensions, log)

    def __init__(self, directory, apptainer, refresh=60.0, timeout=30.0, extensions=(".sif", ".simg"), log=None,
                 clock=None):
        super().__init__(clock=clock)
        self.directory = directory
        self.apptainer = list(apptainer)
        self.refresh_interval = refresh
        self.timeout = timeout
        self.extensions = tuple(extensions)
        self.log = log
        self.images: dict[str, Image] = {}
        self.loaded_at = 0.0
        self.inspections = 0  # apptainer inspect runs (tests check the cache)
        # as the hub's own user, locally: the admin's folder, not a user's (injectable in tests)
        self.runner = CommandRunner(prefix=[], timeout=timeout, log=log)

    def _list(self):
        found = {}
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as e:
            if self.log:
                self.log.error("container images folder %s cannot be read: %s", self.directory, e.strerror)
            return found
        for name in names:
            path = os.path.join(self.directory, name)
            if name.startswith(".") or not (os.path.isdir(path) or name.endswith(self.extensions)):
                continue
            if not SAFE_VALUE.fullmatch(name):
                if self.log:
                    self.log.warning("container image %r skipped: its name is not a plain value", name)
                continue
            st = os.stat(path)
            found[name] = (path, (st.st_mtime_ns, st.st_size, st.st_ino))
        return found

    async def _inspect(self, name, path, stamp) -> Image:
        argv = [*self.apptainer, "inspect", "--json", path]
        self.inspections += 1
        try:
            result = await self.runner.run(argv, env=_plain_env(), timeout=self.timeout)
            data = json.loads(result.stdout)
            labels = ((data.get("data") or {}).get("attributes") or {}).get("labels") or {}
            if not isinstance(labels, dict):
                raise ValueError("labels are not a JSON object")
            args = {n: arg_field(n, kind) for n, kind in declared_args(labels).items()}
        except CommandError as e:
            return Image(name, path, error=f"apptainer inspect failed: {e.brief}", stamp=stamp)
        except (ValueError, AttributeError) as e:  # json.JSONDecodeError is a ValueError
            return Image(name, path, error=f"labels not usable: {e}", stamp=stamp)
        return Image(name, path, args=args, stamp=stamp)

    async def _refresh(self):
        listing = await asyncio.to_thread(self._list)
        images = {}
        for name, (path, stamp) in listing.items():
            old = self.images.get(name)
            if old is not None and old.stamp == stamp:
                images[name] = old
                continue
            image = await self._inspect(name, path, stamp)
            if image.error and self.log:
                self.log.warning("container image %s is not offered: %s", path, image.error)
            images[name] = image
        self.images = images
        self.loaded_at = self.clock.now()

    def wanted(self) -> bool:
        return False  # no background loop: refresh_soon() starts one refresh when the cache is stale

    def refresh_soon(self):
        """Start a background refresh if the cache is stale and none runs; never waits."""
        stale = self.clock.now() - self.loaded_at >= self.refresh_interval or not self.loaded_at
        if stale and (self._task is None or self._task.done()):
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._refresh())
        return self._task

    async def ready(self):
        """The current images; waits only for the very first listing (and refreshes in the background)."""
        task = self.refresh_soon()
        if not self.loaded_at and task is not None:
            await asyncio.shield(task)
        return self.usable()

    def usable(self) -> dict[str, Image]:
        return {n: img for n, img in self.images.items() if not img.error}


class ContainerChoice:
    """A profile's ``container`` spec: the image field, its arguments, and the command they make."""

    def __init__(self, spec: dict, static_fields=()):
        if not isinstance(spec, dict):
            raise ValueError("'container' must be a dict with at least 'dir'")
        unknown = set(spec) - CONTAINER_KEYS
        if unknown:
            raise ValueError(f"container: unknown keys {sorted(unknown)}")
        directory = spec.get("dir")
        if not isinstance(directory, str) or not os.path.isabs(directory):
            raise ValueError("container: 'dir' must be an absolute path to the admin's image folder")
        self.directory = directory
        apptainer = spec.get("apptainer", "apptainer")
        self.apptainer = shlex.split(apptainer) if isinstance(apptainer, str) else [str(w) for w in apptainer]
        if not self.apptainer:
            raise ValueError("container: 'apptainer' is empty")
        self.binds = [str(b) for b in spec.get("binds") or []]
        for bind in self.binds:
            if not bind or any(c in bind for c in "\n\r\0") or bind.startswith("-"):
                raise ValueError(f"container: bind {bind!r} is not a path[:path[:opts]]")
        self.field = str(spec.get("field", "image"))
        if not NAME_RE.fullmatch(self.field) or self.field in static_fields or self.field == "profile":
            raise ValueError(f"container: field name {self.field!r} must be a new lower-case identifier")
        self.label = str(spec.get("label", "Container image"))
        self.static_fields = set(static_fields)
        self.refresh = float(spec.get("refresh", 60))
        self.inspect_timeout = float(spec.get("inspect_timeout", 30))
        self.extensions = tuple(spec.get("extensions", (".sif", ".simg")))

    def catalog(self, log=None) -> ImageCatalog:
        return ImageCatalog.shared(self.directory, self.apptainer, self.refresh, self.inspect_timeout,
                                   self.extensions, log)

    def usable(self, log=None) -> dict[str, Image]:
        """The images offered now, usable ones whose arguments do not clash with the profile's fields."""
        images = {}
        for name, image in self.catalog(log).usable().items():
            clash = set(image.args) & (self.static_fields | {self.field})
            if clash:
                if log:
                    log.warning("container image %s not offered: its arguments %s clash with the profile's fields",
                                image.path, sorted(clash))
                continue
            images[name] = image
        return images

    def image_field(self, images) -> ChoiceField | None:
        if not images:
            return None
        return ChoiceField(self.field, {"label": self.label, "choices": {n: n for n in images}})

    def parse(self, options: dict, images: dict) -> tuple[str, dict]:
        """``(image name, {arg: canonical value})`` from user options, or OptionError."""
        raw = options.get(self.field)
        if not images:
            raise OptionError(self.field, "no container image is available; ask your site's administrators")
        if raw in (None, "", [""]):
            raise OptionError(self.field, "is required (one of: " + ", ".join(images) + ")")
        name = self.image_field(images).parse(raw)
        image = images[name]
        values = {}
        for arg, fld in image.args.items():
            value = options.get(arg)
            if value not in (None, "", [""]):
                values[arg] = fld.parse(value)
        return name, values

    def command(self, image: Image, args: dict, base_cmd, gpus: bool) -> list[str]:
        """``apptainer exec`` words that run ``base_cmd`` inside ``image`` with exactly ``args``."""
        words = [*self.apptainer, "exec"]
        for bind in self.binds:
            words += ["--bind", bind]
        if gpus:
            words.append("--nv")
        for name in sorted(args):
            words += ["--env", f"{name}={args[name]}"]
        return [*words, image.path, *base_cmd]


def _plain_env():
    return {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "USER")}


def wants_gpus(value) -> bool:
    try:
        return int(str(value or "0").strip() or 0) > 0
    except ValueError:
        return bool(str(value).strip())
