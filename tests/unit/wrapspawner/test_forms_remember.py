"""Forms that remember (issue 26): the last values a user submitted for a profile are that profile's
defaults in the user's next form (per user, per profile, across a hub restart), checked again
against the profile's current fields and the cluster's limits; "Edit and launch" prefills one
session's values; form_inputs gives the inputs that post a session's options again."""

from __future__ import annotations

import json
import logging
import os
import re
import stat

from types import SimpleNamespace

import pytest
from wraphelpers import make_wrapper

from batchspawner.polling.cluster import ClusterInfo, Partition
from test_containers import images  # noqa: F401 (the fixture)
from wrapspawner import ProfilesSpawner, remember
from wrapspawner import profiles as profiles_module

from test_refused_form import PROFILES  # the same two profiles (small, custom)


def wrapper(user="rita", server="", profiles=PROFILES, **traits):
    w = make_wrapper(ProfilesSpawner, name=user, profiles=profiles, cluster_limits=False, **traits)
    w.orm_spawner = SimpleNamespace(name=server, display_name=server, server=None, user_options=None)  # the hub's record: the server's name
    return w


async def launch(user, options, server="", **traits):
    """What a form post does up to the child: options checked, then select_child (start)."""
    w = wrapper(user, server, **traits)
    form = {"profile": [options["profile"]]}
    form.update({f"{options['profile']}.{k}": [v] for k, v in options.items() if k != "profile"})
    w.user_options = await w.run_options_from_form(form)
    await w.select_child()
    return w


def shown(html, input_id):
    """The value the form shows for ``input_id`` (a text input's value or a select's chosen option)."""
    m = re.search(rf'name="{re.escape(input_id)}" id="{re.escape(input_id)}"\s+value="([^"]*)"', html)
    if m:
        return m.group(1)
    block = re.search(rf'<select[^>]*name="{re.escape(input_id)}".*?</select>', html, re.S).group(0)
    return re.search(r'<option value="([^"]*)" selected>', block).group(1)


def checked(html):
    return re.search(r'value="([^"]+)"\s+checked', html).group(1)


async def test_last_values_are_the_next_forms_defaults_on_any_server_and_after_a_restart():
    await launch("rita", {"profile": "custom", "partition": "long", "nprocs": "6", "memory": "4096M"}, server="a")
    # another server of the same user, a form that never ran anything: same profile and values
    html = await wrapper("rita", "b").get_options_form()
    assert checked(html) == "custom"
    assert (shown(html, "custom.partition"), shown(html, "custom.nprocs"), shown(html, "custom.memory")) == (
        "long", "6", "4G")  # canonical form of what was sent
    # the hub restarts: the file is read again
    remember._stores.clear()
    html = await wrapper("rita", "c").get_options_form()
    assert checked(html) == "custom" and shown(html, "custom.nprocs") == "6"
    path = profiles_module.REMEMBER_FILE_DEFAULT
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.load(open(path))["users"]["rita"]["profiles"]["custom"] == {
        "partition": "long", "nprocs": "6", "memory": "4G"}
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]


async def test_per_user_and_per_profile():
    await launch("rita", {"profile": "small", "runtime": "03:00:00"})
    await launch("rita", {"profile": "custom", "nprocs": "5"}, server="x")
    html = await wrapper("rita", "y").get_options_form()
    assert checked(html) == "custom"  # the last profile launched
    assert shown(html, "small.runtime") == "03:00:00" and shown(html, "custom.nprocs") == "5"
    other = await wrapper("sam").get_options_form()
    assert checked(other) == "small"
    assert shown(other, "small.runtime") == "01:00:00" and shown(other, "custom.nprocs") == "2"


async def test_a_value_no_longer_allowed_falls_back_to_the_profile_default():
    await launch("rita", {"profile": "custom", "partition": "long", "nprocs": "8", "memory": "8G"})
    narrower = [PROFILES[0], {**PROFILES[1], "fields": {
        "partition": {"type": "choice", "choices": ["debug"], "default": "debug"},
        "nprocs": {"type": "int", "min": 1, "max": 4, "default": 2},
        "memory": {"type": "memory", "min": "512M", "max": "8G", "default": "2G"}}}]
    html = await wrapper("rita", profiles=narrower).get_options_form()
    assert shown(html, "custom.partition") == "debug" and shown(html, "custom.nprocs") == "2"
    assert shown(html, "custom.memory") == "8G"  # still allowed: kept


async def test_a_value_above_the_partitions_current_limit_falls_back():
    await launch("rita", {"profile": "custom", "partition": "long", "nprocs": "6", "memory": "4G"})
    w = make_wrapper(ProfilesSpawner, name="rita", profiles=PROFILES, cluster_limits=True, cluster_wait=0)
    info = ClusterInfo.get()
    info.partitions = {"long": Partition("long", max_cpus_per_node=4, nodes=1, max_mem_per_node_mb=8192)}
    values = w._shown_values(w.profile("custom"), {"partition": "long", "nprocs": "6", "memory": "4G"})
    assert values == {"custom.partition": "long", "custom.nprocs": "2", "custom.memory": "4G"}


async def test_refused_values_are_not_remembered_and_remember_file_empty_remembers_nothing(tmp_path):
    w = wrapper("rita")
    with pytest.raises(Exception):
        await w.run_options_from_form({"profile": ["custom"], "custom.nprocs": ["99"]})
    assert not os.path.exists(profiles_module.REMEMBER_FILE_DEFAULT)
    off = await launch("tom", {"profile": "custom", "nprocs": "3"}, remember_file="")
    assert off.remember_file == "" and not os.path.exists(profiles_module.REMEMBER_FILE_DEFAULT)


async def test_a_garbled_file_means_nothing_remembered(caplog):
    with open(profiles_module.REMEMBER_FILE_DEFAULT, "w") as f:
        f.write("{not json")
    with caplog.at_level(logging.WARNING, logger="wrapspawner.remember"):
        html = await wrapper("rita").get_options_form()
    assert checked(html) == "small" and "cannot read" in caplog.text
    await launch("rita", {"profile": "custom", "nprocs": "3"})  # and is replaced by the next launch
    assert json.load(open(profiles_module.REMEMBER_FILE_DEFAULT))["users"]["rita"]["last"] == "custom"


async def test_rest_values_only_what_was_sent_is_remembered():
    w = wrapper("rita")
    w.user_options = {"profile": "custom", "nprocs": 7}
    await w.select_child()
    assert remember.store(w.remember_file).values("rita", "custom") == {"nprocs": "7"}


async def test_edit_prefill_shows_that_sessions_values_once_for_its_target_server():
    await launch("rita", {"profile": "custom", "nprocs": "6"})
    profiles_module.prefill_form("rita", "edit1", {"profile": "small", "runtime": "02:30:00"})
    assert checked(await wrapper("rita", "other").get_options_form()) == "custom"  # not that server's
    html = await wrapper("rita", "edit1").get_options_form()
    assert checked(html) == "small" and shown(html, "small.runtime") == "02:30:00"
    assert shown(html, "custom.nprocs") == "6"
    assert shown(await wrapper("rita", "edit1").get_options_form(), "small.runtime") == "01:00:00"


async def test_prefill_values_are_checked_again():
    profiles_module.prefill_form("rita", "", {"profile": "custom", "nprocs": "99", "memory": "1G"})
    html = await wrapper("rita").get_options_form()
    assert checked(html) == "custom" and shown(html, "custom.nprocs") == "2" and shown(html, "custom.memory") == "1G"


def test_form_inputs_post_a_sessions_options_again():
    w = wrapper("rita")
    assert w.form_inputs({"profile": "custom", "nprocs": "4", "memory": "2G", "partition": "long"}) == [
        ("profile", "custom"), ("custom.partition", "long"), ("custom.nprocs", "4"), ("custom.memory", "2G")]
    assert w.form_inputs({"profile": "gone"}) == [] and w.form_inputs(None) == []


async def test_a_container_profile_remembers_the_image_and_its_arguments(images):  # noqa: F811
    from test_containers import profiles as container_profiles
    from wraphelpers import fake_runner

    boxes = container_profiles(images, fake_runner())
    w = wrapper("rita", profiles=boxes)
    w.user_options = await w.run_options_from_form(
        {"profile": ["box"], "box.image": ["analysis"], "box.analysis.threads": ["4"], "box.ngpus": ["1"]})
    await w.select_child()
    html = await wrapper("rita", "other", profiles=boxes).get_options_form()
    assert shown(html, "box.image") == "analysis" and shown(html, "box.analysis.threads") == "4"
    assert shown(html, "box.ngpus") == "1"
    # Relaunch posts the same inputs again
    assert w.form_inputs(w.user_options) == [
        ("profile", "box"), ("box.ngpus", "1"), ("box.image", "analysis"), ("box.analysis.threads", "4")]
