"""ProfilesSpawner's spawn form: rendering it, and showing it again after a refusal or for a relaunch.

:class:`ProfileForm` is mixed into :class:`~wrapspawner.profiles.ProfilesSpawner`. A refused form is
shown again with what the user entered and the field named (:class:`RefusedForm`); Relaunch and
Edit and launch put a session's values in the next form (:func:`prefill_form`). The values a form
shows are never trusted: every submit is validated again (``ProfilesSpawner.validate_options``).
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass

import jinja2
from jupyterhub.spawner import Spawner
from traitlets import HasTraits, default

from batchspawner.core.options import OptionError

from . import formfacts, remember

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
# A refused form is shown again with what the user entered: {user name: RefusedForm}, taken by the
# next form render for that user within REFUSED_FORM_TTL seconds (JupyterHub renders it at once).
REFUSED_FORM_TTL = 10.0
REFUSED_FORMS_MAX = 1000


@dataclass
class RefusedForm:
    at: float
    profile: str
    values: dict  # input name -> the text the user sent
    input_id: str  # the input to mark ("" when none: e.g. the profile itself)
    label: str
    rule: str


_refused_forms: dict[str, RefusedForm] = {}


def _remember_refused(user: str, refused: RefusedForm):
    now = time.monotonic()
    for name in [n for n, r in _refused_forms.items() if now - r.at > REFUSED_FORM_TTL]:
        del _refused_forms[name]
    if len(_refused_forms) >= REFUSED_FORMS_MAX:
        _refused_forms.pop(next(iter(_refused_forms)))
    _refused_forms[user] = refused


def _take_refused(user: str) -> RefusedForm | None:
    refused = _refused_forms.pop(user, None)
    if refused is None or time.monotonic() - refused.at > REFUSED_FORM_TTL:
        return None
    return refused


# "Edit and launch" (issue 26): the values of one session, shown in the next form render of that
# user's target server within PREFILL_TTL seconds (the edit page redirects to the form at once).
PREFILL_TTL = 60.0
_prefills: dict[str, tuple[float, str, dict]] = {}


def prefill_form(user: str, server: str, options: dict) -> None:
    """Show ``options`` ({"profile": key, field: value}) in ``user``'s next form for ``server``."""
    now = time.monotonic()
    for name in [n for n, (at, _, _) in _prefills.items() if now - at > PREFILL_TTL]:
        del _prefills[name]
    if len(_prefills) >= REFUSED_FORMS_MAX:
        _prefills.pop(next(iter(_prefills)))
    _prefills[user] = (now, server, dict(options))


def _take_prefill(user: str, server: str) -> dict | None:
    found = _prefills.get(user)
    if found is None or found[1] != server:
        return None
    del _prefills[user]
    return found[2] if time.monotonic() - found[0] <= PREFILL_TTL else None


class ProfileForm(HasTraits):
    """Part of :class:`~wrapspawner.profiles.ProfilesSpawner` (see the module's docstring)."""

    async def _refused_form(self, formdata, error: OptionError) -> OptionError:
        chosen = (formdata.get("profile") or [""])[0] if isinstance(formdata.get("profile"), list) else ""
        profile = self.profile(chosen)
        if profile is not None and not await profile.visible_to(self):
            profile = None  # never describe (or preselect) a profile this user may not see
        label, input_id = "", ""
        if profile is not None:
            fld = profile.fields.get(error.field)
            if fld is not None:
                label, input_id = fld.label, f"{profile.key}.{error.field}"
            elif profile.container is not None:
                if error.field == profile.container.field:
                    label, input_id = "Container image", f"{profile.key}.{error.field}"
                else:
                    image = (formdata.get(f"{profile.key}.{profile.container.field}") or [""])[0]
                    images = profile.container.usable(self.log) if image else {}
                    arg = images[image].args.get(error.field) if image in images else None
                    if arg is not None:
                        label, input_id = arg.label, f"{profile.key}.{image}.{error.field}"
        if not label:
            label = "Profile" if error.field == "profile" else str(error.field).replace("_", " ").capitalize()
        values = {
            name: str(v[0])[:256] for name, v in formdata.items()
            if name not in ("_xsrf", "profile") and isinstance(v, list) and v and isinstance(v[0], str)
        }
        if profile is not None:
            _remember_refused(self.user.name, RefusedForm(time.monotonic(), chosen, values, input_id, label, error.rule))
        refused = OptionError(error.field, error.rule)
        refused.jupyterhub_message = f"{label} {error.rule}. Change it below and start again."
        return refused
    def prefill_form(self, server: str, options: dict) -> None:
        """"Edit and launch": this user's next form for ``server`` shows ``options`` (checked again)."""
        prefill_form(self.user.name, server, options if isinstance(options, dict) else {})
    def form_inputs(self, options) -> list[tuple[str, str]]:
        """The spawn form's inputs that post ``options`` ({"profile": key, field: value}) again:
        ``[("profile", key), ("key.field", value), ...]`` (the image's arguments as
        ``key.image.arg``); [] when ``options`` name no profile of this spawner."""
        options = options if isinstance(options, dict) else {}
        profile = self.profile(options.get("profile")) if isinstance(options.get("profile"), str) else None
        if profile is None:
            return []
        inputs = [("profile", profile.key)]
        for name in profile.fields:
            if options.get(name) not in (None, ""):
                inputs.append((f"{profile.key}.{name}", str(options[name])))
        if profile.container is not None and isinstance(options.get(profile.container.field), str):
            image = options[profile.container.field]
            inputs.append((f"{profile.key}.{profile.container.field}", image))
            for name, value in options.items():
                if name not in profile.fields and name not in ("profile", profile.container.field) \
                        and value not in (None, ""):
                    inputs.append((f"{profile.key}.{image}.{name}", str(value)))
        return inputs
    # ------------------------------------------------------------ form
    @default("options_form")
    def _default_options_form(self):
        """wrapspawner 1.0 exposed the rendered form here: the profile choice (the 1.0 select, or
        ``form_template`` when set) for the profiles this user can be shown without waiting.
        What the hub shows is :meth:`get_options_form` (the full form with fields); an
        ``options_form`` set in the config replaces it, as in 1.0."""
        visible = [p for p in self.parsed_profiles if self._visible_now(p)]
        if not visible:
            return ""
        options = "".join(
            self.input_template.format(
                key=html.escape(p.key), display=html.escape(p.display),
                first=self.first_template if i == 0 else "",
            )
            for i, p in enumerate(visible)
        )  # fmt: skip
        form = self.form_template or (
            '<label for="profile">Select a job profile:</label>\n'
            '<select class="form-control" name="profile" required autofocus>\n{input_template}\n</select>\n'
        )
        return form.format(input_template=options)

    async def get_options_form(self):
        if "options_form" in self._explicit:  # the admin's own form (1.0: it replaced the default)
            return await Spawner.get_options_form(self)
        visible = await self.visible_profiles()
        keys = {p.key for p in visible}
        memory = remember.store(self.remember_file)
        last = self.user_options if isinstance(self.user_options, dict) else {}
        prefill = _take_prefill(self.user.name, self.name or "")  # "Edit and launch" of a session
        if prefill is not None and prefill.get("profile") in keys:
            selected = prefill["profile"]
        else:
            prefill = None
            selected = last.get("profile") if last.get("profile") in keys else None
            remembered_last = memory.last_profile(self.user.name) if memory is not None else ""
            selected = selected or (remembered_last if remembered_last in keys else None)
            selected = selected or self._default_key(visible)
        refused = _take_refused(self.user.name)
        if refused is not None and refused.profile in keys:
            selected = refused.profile
        else:
            refused = None
        if self.form_template:
            return self._legacy_form(visible, selected)
        slurm = [p for p in visible if self._is_slurm(p)]
        infos = [self.cluster_info(p) for p in slurm]  # each profile's own cluster (factsource)
        # background refreshes; this render uses what is cached, except the first after a hub
        # start (all clusters waited for together, at most cluster_wait)
        await formfacts.first_answers(infos, self.cluster_wait)
        cluster = {}  # 1.x templates' one partition list: only when every Slurm profile has one cluster
        if infos and infos[0] is not None and all(i is infos[0] for i in infos):
            cluster = {name: part.describe() for name, part in infos[0].partitions.items()}

        def source(p) -> dict:
            """Where this profile's shown values come from: the session being edited, else what this
            user last submitted for it, else this server's own last options (all checked again)."""
            if prefill is not None and p.key == prefill["profile"]:
                return prefill
            remembered = memory.values(self.user.name, p.key) if memory is not None else {}
            if remembered:
                return remembered
            return last if last.get("profile") == p.key else {}

        values = {}
        containers = {}
        for p in visible:
            values.update(self._shown_values(p, source(p)))
            # container profiles: the image choice and each image's declared arguments, from the
            # cached catalog (inspected in the background; only the very first listing waits)
            if p.container is None:
                continue
            images = await self._images(p)
            containers[p.key] = {"field": p.container.image_field(images), "images": images}
            src = source(p)
            last_image = src.get(p.container.field)
            values[f"{p.key}.{p.container.field}"] = last_image if last_image in images else ""
            for image_name, image in images.items():
                for arg, fld in image.args.items():
                    value = ""
                    if last_image == image_name and arg in src:
                        try:
                            value = fld.parse(src[arg])
                        except OptionError:
                            pass
                    values[f"{p.key}.{image_name}.{arg}"] = value
        if refused is not None:  # what the user entered, exactly (autoescaped by the template)
            values.update({k: v for k, v in refused.values.items() if k in values})
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([*self.template_paths, TEMPLATES]),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        invalid = {"input": refused.input_id, "rule": refused.rule} if refused else {"input": "", "rule": ""}
        facts = await formfacts.form_context(self, slurm, values) if slurm else {}
        return env.get_template(self.form_template_name).render(
            profiles=visible, selected=selected, values=values, user=self.user.name, containers=containers,
            cluster=cluster, invalid=invalid, facts=facts, facts_js=formfacts.script_url(self),
        )

    def _shown_values(self, profile, source: dict) -> dict:
        """``{"key.field": value}`` shown for ``profile``'s fields: ``source``'s values where they still
        pass the field's checks and the cluster's limits for the chosen partition, else the default."""
        chosen, shown = {}, {}
        for name, fld in profile.fields.items():
            value = fld.default
            if source.get(name) not in (None, ""):
                try:
                    value = fld.parse(source[name])
                    chosen[name] = fld.default
                except OptionError:
                    pass  # no longer allowed (or refused before): the profile's default
            shown[name] = value
        for _ in range(len(chosen) + 1):
            try:
                self._check_cluster_limits(profile, shown)
                break
            except OptionError as e:
                if e.field not in chosen:
                    break  # the profile's own defaults do not fit: nothing of the user's to drop
                shown[e.field] = chosen.pop(e.field)
        return {f"{profile.key}.{name}": (v if v is not None else "") for name, v in shown.items()}

    def _legacy_form(self, visible, selected):
        options = "".join(
            self.input_template.format(
                key=html.escape(p.key),
                display=html.escape(p.display),
                first=self.first_template if p.key == selected else "",
            )
            for p in visible
        )
        return self.form_template.format(input_template=options)
