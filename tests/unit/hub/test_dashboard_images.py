"""A start tile per container image (issue 26): a container profile's usable images each get a tile
("Jupyter in <image>") opening the form with that profile and that image selected; only images the
catalog already holds (no apptainer run per page view); before the first listing, the profile keeps
its one tile; an image not offered (any more) opens the form without one, never a 500.

The images are inspected by the FAKE apptainer (tests/fakeapptainer, see
tests/unit/wrapspawner/test_containers.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import jinja2
import pytest
from test_containers import FAKE_APPTAINER, make_image
from wraphelpers import make_wrapper

from batchspawner.hub import dashboard
from batchspawner.hub.web import TEMPLATES
from wrapspawner import ProfilesSpawner


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    make_image(images, "analysis", {"ANALYSIS_ARG_INT": "threads"})
    make_image(images, "plain", {"maintainer": "hpc"})
    make_image(images, "bad-labels", {"X_ARG_INT": "Not-An-Identifier"})  # not usable: no tile
    return images


def wrapper(folder, server=""):
    w = make_wrapper(ProfilesSpawner, name="rita", cluster_limits=False, remember_file="", profiles=[
        {"key": "small", "display": "Small", "class": "batchspawner.SlurmSpawner"},
        {"key": "box", "display": "Containers", "class": "batchspawner.SlurmSpawner", "description": "Your image.",
         "container": {"dir": str(folder), "apptainer": FAKE_APPTAINER}},
    ])  # fmt: skip
    w.orm_spawner = SimpleNamespace(name=server, display_name=server, server=None, user_options=None, state={})
    w.user.allow_named_servers = True
    w.user.spawners[server] = w
    w.user.orm_spawners = {server: w.orm_spawner}
    return w


class Stub:
    def __init__(self, user, image=None):
        self.current_user = user
        self.hub = SimpleNamespace(base_url="/hub/")
        self.redirected = None
        self.args = {} if image is None else {"image": image}

    def get_argument(self, name, default=None):
        return self.args.get(name, default)

    def redirect(self, url, status=None):
        self.redirected = url

    async def get_current_user_named_server_limit(self):
        return 0


async def _listed(w):
    """The catalog as a form render leaves it (the only place that waits for the first listing)."""
    box = w.profile("box")
    await box.container.catalog().ready()
    return box.container.catalog()


async def test_before_the_first_listing_the_container_profile_keeps_its_one_tile(folder):
    w = wrapper(folder)
    tiles = dashboard.start_tiles(w.user)
    assert [(t["key"], t.get("image")) for t in tiles] == [("small", None), ("box", None)]
    catalog = w.profile("box").container.catalog()
    assert catalog.inspections == 0  # the page ran no apptainer itself...
    if catalog._task is not None:  # ...it only started the first listing in the background
        await catalog._task
    assert [t.get("image") for t in dashboard.start_tiles(w.user)] == [None, "analysis", "plain"]


async def test_one_tile_per_usable_image_from_the_cache_only(folder):
    w = wrapper(folder)
    catalog = await _listed(w)
    runs = catalog.inspections
    tiles = dashboard.start_tiles(w.user)
    assert [(t["key"], t.get("image")) for t in tiles] == [("small", None), ("box", "analysis"), ("box", "plain")]
    analysis = tiles[1]
    assert analysis["title"] == "Jupyter in analysis" and analysis["description"] == "Your image."
    assert analysis["href"] == "hpc/start/box?image=analysis"
    assert len({t["id"] for t in tiles}) == 3
    catalog.loaded_at -= 7200  # stale: a page view still reads the cache and starts nothing
    dashboard.start_tiles(w.user)
    assert catalog.inspections == runs and (catalog._task is None or catalog._task.done())
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    html = str(env.get_template("hpc_tiles.html").module.hpc_tiles(tiles, "/hub/"))
    assert 'data-profile="box" data-image="plain" href="/hub/hpc/start/box?image=plain"' in html


async def test_an_image_tile_opens_the_form_with_that_profile_and_image_selected(folder):
    w = wrapper(folder)
    await _listed(w)
    handler = Stub(w.user, image="plain")
    await dashboard.StartHandler.get(handler, "box")
    assert handler.redirected == "/hub/spawn/rita/box"
    form = await wrapper(folder, server="box").get_options_form()
    assert re.search(r'value="box"\s+checked', form), form[:2000]
    select = form.split('name="box.image"')[1].split("</select>")[0]
    assert re.search(r'<option value="plain"\s+selected', select), select
    assert not re.search(r'<option value="analysis"\s+selected', select)


@pytest.mark.parametrize("image", ["gone", "bad-labels", "<script>x</script>", "a" * 400, "\x00"])
async def test_an_image_not_offered_opens_the_form_without_one(folder, image):
    w = wrapper(folder)
    await _listed(w)
    handler = Stub(w.user, image=image)
    await dashboard.StartHandler.get(handler, "box")
    form = await wrapper(folder, server="box").get_options_form()
    assert re.search(r'value="box"\s+checked', form)
    select = form.split('name="box.image"')[1].split("</select>")[0]
    assert "selected" not in select and "<script>x" not in form


async def test_an_image_argument_on_a_profile_without_container_is_ignored(folder):
    w = wrapper(folder)
    handler = Stub(w.user, image="plain")
    await dashboard.StartHandler.get(handler, "small")
    assert handler.redirected == "/hub/spawn/rita/small"
    form = await wrapper(folder, server="small").get_options_form()
    assert re.search(r'value="small"\s+checked', form)
