"""The form's script in a real browser (Debian's Chromium) on cluster facts this host cannot give:
GPU partitions (sinfo's GRES, real format) and Slurm associations (sacctmgr, real format; no
slurmdbd here). The form is rendered by ProfilesSpawner from the fixtures through an injected
runner, saved next to wrapspawner/templates/formfacts.js and opened from disk: no hub needed.
The same script against the real cluster and hub: test_form_facts_live.py.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest

from gatewaytools import CHROMIUM, CHROMIUM_ARGS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "unit"))
sys.path.insert(0, str(HERE.parent / "unit" / "wrapspawner"))  # test_formfacts, wraphelpers


def _render() -> str:
    from fakes import FakeRunner
    from test_formfacts import GPU_SCONTROL, PROFILES, SINFO_GPUS, responder
    from wraphelpers import make_wrapper

    from batchspawner.polling.cluster import ClusterInfo
    from wrapspawner import ProfilesSpawner

    async def render():
        ClusterInfo._registry["slurm"] = ClusterInfo(runner=FakeRunner(responder(sinfo=SINFO_GPUS, scontrol=GPU_SCONTROL)))
        try:
            return await make_wrapper(ProfilesSpawner, profiles=PROFILES).get_options_form()
        finally:
            await ClusterInfo.stop_all()

    return asyncio.run(render())


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (scripts/setup-browser.sh)")
    from playwright.sync_api import sync_playwright

    import wrapspawner.formfacts as formfacts

    tmp = tmp_path_factory.mktemp("formfacts-page")
    form = re.sub(r'src="[^"]*formfacts\.js[^"]*"', 'src="formfacts.js"', _render())
    shutil.copy(formfacts.SCRIPT, tmp / "formfacts.js")
    (tmp / "form.html").write_text(
        '<!doctype html><html><body><form id="spawn_form" method="post" action="about:blank">'
        f'{form}<button type="submit">Start</button></form></body></html>')
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    p = browser.new_page()
    p.set_default_timeout(10_000)
    p.goto((tmp / "form.html").as_uri())
    try:
        yield p
    finally:
        browser.close()
        pw.stop()


def _enabled(page, name):
    return page.eval_on_selector(f"[name='{name}']", "e => Array.from(e.options).filter(o => !o.disabled).map(o => o.value)")


def test_gpu_types_and_gpu_maximum_follow_the_partition(page):
    from playwright.sync_api import expect

    page.select_option("[name='custom.partition']", "gpu")
    assert _enabled(page, "custom.gpu_type") == ["", "a100", "v100"]
    page.select_option("[name='custom.gpu_type']", "a100")
    hint, live = page.locator("[id='custom.ngpus-hint']"), page.locator("[id='custom.ngpus-live']")
    expect(hint).to_have_text("max 4 GPUs on gpu")
    expect(page.locator("[name='custom.ngpus']")).to_have_attribute("max", "4")
    page.fill("[name='custom.ngpus']", "3")
    page.select_option("[name='custom.gpu_type']", "v100")  # 2 per node
    expect(live).to_have_text("GPUs: at most 2 GPUs on gpu")
    expect(page.locator("[name='custom.ngpus']")).to_have_class(re.compile(r"\bis-invalid\b"))
    assert page.evaluate("document.getElementById('spawn_form').checkValidity()") is False
    page.select_option("[name='custom.gpu_type']", "a100")
    expect(live).to_have_text("")
    # a partition without typed GPUs: the types are not offered and a chosen one is dropped
    page.select_option("[name='custom.partition']", "old")
    assert _enabled(page, "custom.gpu_type") == [""]
    assert page.input_value("[name='custom.gpu_type']") == ""
    expect(hint).to_have_text("max 2 GPUs on old")
    # memory and time: the lower of the field's and the partition's maximum, in the field's words
    page.select_option("[name='custom.partition']", "gpu")
    page.fill("[name='custom.memory']", "9G")
    expect(page.locator("[id='custom.memory-live']")).to_have_text("Memory: at most 8G")
    page.fill("[name='custom.memory']", "8G")
    page.fill("[name='custom.runtime']", "2-00:00:00")
    expect(page.locator("[id='custom.runtime-live']")).to_have_text("Wall time: at most 8 h")
    page.fill("[name='custom.runtime']", "01:00:00")
    page.fill("[name='custom.ngpus']", "0")
    assert page.evaluate("document.getElementById('spawn_form').checkValidity()") is True


def test_qos_choices_follow_the_account(page):
    assert _enabled(page, "custom.account") == ["", "chem-lab", "proj042", "teaching"]
    assert _enabled(page, "custom.qos") == ["", "gpu-high", "long", "normal"]
    page.select_option("[name='custom.qos']", "gpu-high")
    page.select_option("[name='custom.account']", "proj042")
    assert _enabled(page, "custom.qos") == ["", "long", "normal"]
    assert page.input_value("[name='custom.qos']") == ""  # gpu-high is not proj042's
    page.select_option("[name='custom.account']", "teaching")
    assert _enabled(page, "custom.qos") == [""]
    page.select_option("[name='custom.account']", "")
    assert _enabled(page, "custom.qos") == ["", "gpu-high", "long", "normal"]
