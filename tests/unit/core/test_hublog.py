"""The hub log filter (issue 26): a refused form is one WARNING line naming the option, a proxy 404
error on a cancel and asyncio's "Task exception was never retrieved" for an already reported start
failure are dropped; anything else keeps its level and traceback."""

from __future__ import annotations

import io
import logging
import sys

from batchspawner.core import hublog
from batchspawner.core.options import OptionError
from batchspawner.spawner import JobDidNotStart


def _logger(name):
    stream = io.StringIO()
    logger = logging.getLogger(name)
    logger.handlers = [logging.StreamHandler(stream)]
    logger.handlers[0].setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def _raised(exc):
    try:
        raise exc
    except BaseException:
        return sys.exc_info()


def test_refused_form_is_one_warning_line_and_other_errors_keep_their_traceback():
    logger, stream = _logger("test-hublog-hub")
    hublog.install(logger)
    hublog.install(logger)  # idempotent
    assert sum(isinstance(f, hublog.QuietUserMistakes) for f in logger.filters) == 1
    logger.error(hublog.FORM_FAILED, exc_info=_raised(OptionError("nprocs", "is more than partition x allows")))
    logger.error(hublog.FORM_FAILED, exc_info=_raised(RuntimeError("a bug")))
    logger.error("api_request to proxy failed: 404, message='Not Found', url='http://127.0.0.1:1/api/routes/user/a'")
    logger.error("api_request to proxy failed: 500, message='boom'")
    out = stream.getvalue()
    assert "WARNING refused spawn form: option 'nprocs' is more than partition x allows\n" in out
    assert out.count("Traceback") == 1 and "RuntimeError: a bug" in out  # a real error keeps it
    assert "404" not in out and "api_request to proxy failed: 500" in out


def test_never_retrieved_task_exception_dropped_only_for_reported_start_failures():
    hublog.install()
    aio = logging.getLogger("asyncio")
    saved = (aio.handlers[:], aio.propagate, aio.level)
    try:
        _check_asyncio()
    finally:
        aio.handlers, aio.propagate = saved[0], saved[1]
        aio.setLevel(saved[2])


def _check_asyncio():
    aio, stream = _logger("asyncio")
    assert any(isinstance(f, hublog.QuietReportedFailures) for f in aio.filters)
    aio.error("Task exception was never retrieved\nfuture: <Task finished>",
              exc_info=_raised(JobDidNotStart("The batch job 5 ended before your server started.")))
    aio.error("Task exception was never retrieved\nfuture: <Task finished>", exc_info=_raised(KeyError("x")))
    out = stream.getvalue()
    assert out.count("Task exception was never retrieved") == 1 and "KeyError" in out and "JobDidNotStart" not in out


def test_refused_rest_options_are_a_warning_other_start_errors_stay_errors():
    """JupyterHub logs every HTTPError out of a start as ``[E] Error starting NAME's server: ...``
    (jupyterhub/user.py): for options a user got wrong through the REST API that is a WARNING here;
    a job that failed, or anything else, stays an ERROR."""
    logger, stream = _logger("test-hublog-rest")
    hublog.install(logger)
    refused = OptionError("account", "is not one of your Slurm accounts: chem, physics")
    logger.error(f"Error starting alice's server: {refused}")
    logger.error("Error starting bob's server: The batch job 7 ended before your server started (job state FAILED).")
    logger.error("Error starting carol's server: Invalid optionality of the universe")
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("WARNING refused server options of alice: "
                        "Invalid option 'account': is not one of your Slurm accounts: chem, physics")
    assert lines[1].startswith("ERROR Error starting bob's server: The batch job 7")
    assert lines[2].startswith("ERROR Error starting carol's server")
    assert len(lines) == 3
