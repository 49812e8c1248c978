"""Container profiles: images from an admin folder, typed arguments from their labels, the apptainer command.

Apptainer cannot be installed here: ``tests/fakeapptainer/apptainer`` is a FAKE that implements
``inspect --json`` and ``exec`` for sandbox-directory images (see its docstring); the catalog
really runs it as a subprocess. Submits go to the injected fake Slurm runner.
"""

import json
import re
import shlex
from pathlib import Path

import pytest

from batchspawner.core.options import OptionError
from wraphelpers import fake_runner, make_wrapper
from wrapspawner import ProfilesSpawner
from wrapspawner.containers import ImageCatalog, declared_args

FAKE_APPTAINER = str(Path(__file__).resolve().parents[2] / "fakeapptainer" / "apptainer")


def make_image(folder: Path, name: str, labels: dict):
    image = folder / name
    (image / ".singularity.d").mkdir(parents=True)
    (image / "bin").mkdir()
    (image / ".singularity.d" / "labels.json").write_text(json.dumps(labels))
    return image


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    make_image(folder, "analysis", {"ANALYSIS_ARG_INT": "threads", "ANALYSIS_ARG_STR": "dataset, mode",
                                    "ANALYSIS_ARG_FLOAT": "tolerance", "ANALYSIS_ARG_BOOL": "verbose",
                                    "org.label-schema.name": "analysis"})
    make_image(folder, "plain", {"maintainer": "hpc"})
    make_image(folder, "bad-labels", {"X_ARG_INT": "Not-An-Identifier"})
    (folder / "notes.txt").write_text("not an image")
    return folder


def profiles(folder, runner, **container):
    plumbing = {"runner": runner, "query_runner": runner, "status_runner": runner, "startup_poll_interval": 0.01}
    return [
        {"key": "box", "display": "Containers", "class": "batchspawner.SlurmSpawner", "config": plumbing,
         "container": {"dir": str(folder), "apptainer": FAKE_APPTAINER,
                       "binds": ["/opt/jupyterhub-hpc", "/scratch:/scratch:ro"], **container},
         "fields": {"ngpus": {"type": "int", "min": 0, "max": 4, "default": 0}}},
    ]


def test_labels_declare_typed_args():
    assert declared_args({"A_ARG_INT": "n, m", "B_ARG_BOOL": "x", "other": "y"}) == {"n": "INT", "m": "INT", "x": "BOOL"}
    with pytest.raises(ValueError, match="lower-case identifier"):
        declared_args({"A_ARG_STR": "$(id)"})
    with pytest.raises(ValueError, match="both INT and STR"):
        declared_args({"A_ARG_INT": "n", "B_ARG_STR": "n"})


async def test_form_lists_images_and_their_declared_fields(images):
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(images, fake_runner()))
    form = await wrapper.get_options_form()
    assert re.findall(r'<option value="([^"]*)"', form.split('name="box.image"')[1].split("</select>")[0]) == [
        "analysis", "plain"]  # bad labels and non-images are not offered
    for arg in ("threads", "dataset", "mode", "tolerance", "verbose"):
        assert f'name="box.analysis.{arg}"' in form
    assert "box.plain." not in form and "bad-labels" not in form


async def test_inspection_is_cached_and_refreshed_in_the_background(images):
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(images, fake_runner(), refresh=3600))
    await wrapper.get_options_form()
    catalog = wrapper.profile("box").container.catalog()
    assert catalog.inspections == 3
    for _ in range(5):
        await wrapper.get_options_form()
    assert catalog.inspections == 3  # no apptainer call per render
    catalog.loaded_at -= 7200  # stale: the next render starts a refresh and does not wait for it
    make_image(images, "newer", {"N_ARG_INT": "k"})
    form = await wrapper.get_options_form()
    assert "newer" not in form
    await catalog._task
    assert catalog.inspections == 4  # only the new image was inspected (the others' stamps unchanged)
    assert "box.newer.k" in await wrapper.get_options_form()


@pytest.mark.parametrize(
    "options, field, rule",
    [
        ({"image": "analysis", "threads": "4; id"}, "threads", "whole number"),
        ({"image": "analysis", "tolerance": "1e400"}, "tolerance", "decimal number"),
        ({"image": "analysis", "verbose": "maybe"}, "verbose", "must be one of"),
        ({"image": "analysis", "dataset": "a b"}, "dataset", "no spaces"),
        ({"image": "analysis", "dataset": "x,PATH=/evil"}, "dataset", "must match"),
        ({"image": "analysis", "dataset": "-rf"}, "dataset", "must match"),
        ({"image": "analysis", "dataset": "line\nbreak"}, "dataset", "newlines"),
        ({"image": "plain", "threads": "4"}, "threads", "not an option of profile"),  # plain declares none
        ({"image": "analysis", "LD_PRELOAD": "/tmp/x.so"}, "LD_PRELOAD", "not an option"),
        ({"image": "../plain"}, "image", "must be one of"),
        ({"image": "bad-labels"}, "image", "must be one of"),
        ({}, "image", "is required"),
    ],
)
async def test_hostile_values_refused_naming_the_field(images, options, field, rule):
    runner = fake_runner()
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(images, runner))
    wrapper.user_options = {"profile": "box", **options}
    with pytest.raises(OptionError) as err:
        await wrapper.run_pre_spawn_hook()
    assert err.value.status_code == 400 and err.value.field == field and rule in err.value.rule
    assert [c for c in runner.calls if c.argv[0] == "sbatch"] == []


def _job_command(script):
    line = next(line for line in script.splitlines() if "apptainer" in line)
    return shlex.split(line)


async def test_job_runs_the_server_in_the_image_with_exactly_the_validated_args(images):
    runner = fake_runner()
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(images, runner))
    form = {"profile": ["box"], "box.image": ["analysis"], "box.analysis.threads": ["08"],
            "box.analysis.tolerance": ["0.50"], "box.analysis.verbose": ["yes"], "box.analysis.dataset": [""],
            "box.ngpus": ["0"]}
    wrapper.user_options = await wrapper.run_options_from_form(form)
    assert wrapper.user_options == {"profile": "box", "image": "analysis", "threads": "8", "tolerance": "0.5",
                                    "verbose": "true", "ngpus": "0"}
    await wrapper.run_pre_spawn_hook()
    words = _job_command(wrapper.child_spawner.render_script())
    i = words.index(FAKE_APPTAINER)
    assert words[i:] [:words[i:].index(str(images / "analysis")) + 1] == [
        FAKE_APPTAINER, "exec", "--bind", "/opt/jupyterhub-hpc", "--bind", "/scratch:/scratch:ro",
        "--env", "threads=8", "--env", "tolerance=0.5", "--env", "verbose=true", str(images / "analysis")]
    assert words[words.index(str(images / "analysis")) + 1] == "jupyterhub-singleuser"
    assert "--nv" not in words


async def test_gpus_add_nv(images):
    runner = fake_runner()
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(images, runner))
    wrapper.user_options = {"profile": "box", "image": "plain", "ngpus": 1}
    await wrapper.run_pre_spawn_hook()
    words = _job_command(wrapper.child_spawner.render_script())
    assert words[words.index("exec") + 1:words.index(str(images / "plain"))] == [
        "--bind", "/opt/jupyterhub-hpc", "--bind", "/scratch:/scratch:ro", "--nv"]


async def test_form_args_of_another_image_are_ignored_and_unknown_inputs_refused(images):
    wrapper = make_wrapper(ProfilesSpawner, profiles=profiles(images, fake_runner()))
    options = await wrapper.run_options_from_form(
        {"profile": ["box"], "box.image": ["plain"], "box.analysis.threads": ["4"]})
    assert options == {"profile": "box", "image": "plain", "ngpus": "0"}
    with pytest.raises(OptionError) as err:
        await wrapper.run_options_from_form({"profile": ["box"], "box.image": ["plain"], "box.plain.x": ["1"]})
    assert err.value.field == "box.plain.x"


def test_admin_mistakes_are_config_errors(images):
    from traitlets import TraitError

    for container, message in [
        ({"dir": "relative/path"}, "absolute path"),
        ({"dir": str(images), "binds": ["--privileged"]}, "bind"),
        ({"dir": str(images), "field": "ngpus"}, "field name"),
        ({"dir": str(images), "nonsense": 1}, "unknown keys"),
    ]:
        with pytest.raises(TraitError, match=message):
            make_wrapper(ProfilesSpawner, profiles=[
                {"key": "box", "class": "batchspawner.SlurmSpawner", "container": container,
                 "fields": {"ngpus": {"type": "int", "max": 4}}}])


async def test_fake_apptainer_really_runs_the_command_with_the_images_files(images, tmp_path):
    """The fake's exec: the image's bin first on PATH, --env set (checks the test double itself)."""
    tool = images / "plain" / "bin" / "which-image"
    tool.write_text("#!/bin/sh\necho \"$APPTAINER_NAME threads=$threads\"\n")
    tool.chmod(0o755)
    catalog = ImageCatalog(str(images), [FAKE_APPTAINER])
    result = await catalog.runner.run([FAKE_APPTAINER, "exec", "--env", "threads=3", str(images / "plain"),
                                       "which-image"])
    assert result.stdout.strip() == "plain threads=3"
