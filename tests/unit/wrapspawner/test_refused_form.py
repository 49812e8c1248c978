"""A refused spawn form (issue 26 item 2): the next render shows what was entered, the field is named
by its label and marked; the REST API's refusals keep naming the option's key."""

from __future__ import annotations

import re

import pytest
from wraphelpers import make_wrapper

from batchspawner.core.options import OptionError
from wrapspawner import ProfilesSpawner
from wrapspawner import profiles as profiles_module

PROFILES = [
    {"key": "small", "display": "Small", "class": "batchspawner.SlurmSpawner", "default": True,
     "fields": {"runtime": {"type": "walltime", "max": "04:00:00", "default": "01:00:00"}}},
    {"key": "custom", "display": "Custom", "class": "batchspawner.SlurmSpawner",
     "fields": {"partition": {"type": "choice", "choices": ["debug", "long"], "default": "debug"},
                "nprocs": {"type": "int", "min": 1, "max": 8, "default": 2},
                "memory": {"type": "memory", "min": "512M", "max": "8G", "default": "2G"}}},
]


@pytest.fixture(autouse=True)
def _no_leftovers():
    profiles_module._refused_forms.clear()
    yield
    profiles_module._refused_forms.clear()


async def test_refused_form_keeps_values_names_label_and_marks_field():
    wrapper = make_wrapper(ProfilesSpawner, name="rita", profiles=PROFILES, cluster_limits=False)
    form = {"profile": ["custom"], "custom.partition": ["long"], "custom.nprocs": ["99"],
            "custom.memory": ["1G"], "small.runtime": ["01:00:00"]}
    with pytest.raises(OptionError) as err:
        await wrapper.run_options_from_form(form)
    assert err.value.status_code == 400 and err.value.field == "nprocs"
    assert err.value.jupyterhub_message.startswith("CPU cores must be a whole number from 1 to 8")
    assert "'nprocs'" not in err.value.jupyterhub_message
    html = await wrapper.get_options_form()
    assert re.search(r'value="custom"\s+checked', html)
    assert '<option value="long" selected>' in html
    assert re.search(r'class="form-control is-invalid" aria-invalid="true" aria-describedby="custom.nprocs-error"'
                     r' type="text" name="custom.nprocs" id="custom.nprocs"\s+value="99"', html)
    assert 'id="custom.nprocs-error">CPU cores must be a whole number from 1 to 8.</div>' in html
    assert html.count("is-invalid") == 1 and 'value="1G"' in html
    # shown once: the next render is the usual form again
    html = await wrapper.get_options_form()
    assert "is-invalid" not in html and re.search(r'value="small"\s+checked', html)


async def test_entered_text_is_escaped_and_other_users_never_see_it():
    wrapper = make_wrapper(ProfilesSpawner, name="rita", profiles=PROFILES, cluster_limits=False)
    with pytest.raises(OptionError):
        await wrapper.run_options_from_form({"profile": ["custom"], "custom.memory": ['"><script>x</script>']})
    other = make_wrapper(ProfilesSpawner, name="sam", profiles=PROFILES, cluster_limits=False)
    assert "script" not in await other.get_options_form()
    html = await wrapper.get_options_form()
    assert "<script>" not in html and "&#34;&gt;&lt;script&gt;" in html
    assert "Memory must be a whole amount of memory" in html


async def test_default_labels_are_the_same_words_everywhere():
    wrapper = make_wrapper(ProfilesSpawner, name="rita", profiles=PROFILES, cluster_limits=False)
    html = await wrapper.get_options_form()
    assert '<label class="form-label" for="small.runtime">Wall time</label>' in html
    assert "Runtime" not in html and "Nprocs" not in html
    assert wrapper.apply_user_options is not None  # no "unhandled user_options" warning per spawn
