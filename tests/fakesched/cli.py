"""FAKE scheduler command-line tools, for tests only (the real daemons cannot be installed here).

Invoked by the wrappers that install.sh writes: ``cli.py COMMAND ARGS...`` with
FAKESCHED_DIR (the fake cluster's directory) and FAKESCHED_FLAVOUR (torque,
pbs, moab, lsf, condor) in the environment. Each command does what the real
one does to the tiny job table in core.py and prints the real tool's format.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import core  # noqa: E402
import formats  # noqa: E402

FLAVOUR = os.environ.get("FAKESCHED_FLAVOUR", "torque")
VALUE_OPTS = {"-o", "-F", "-limit", "-af", "-W", "-q", "-J", "-n", "-l", "-N", "-v", "-c"}


def out(text="", err="", code=0):
    sys.stdout.write(text)
    sys.stderr.write(err)
    return code


def job_args(args, value_opts=VALUE_OPTS):
    """The positional arguments (job ids), skipping option values."""
    found, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a.startswith("-"):
            skip = a in value_opts
            continue
        found.append(a)
    return found


def job_arg(args, value_opts=VALUE_OPTS):
    """The first positional argument (a job id), skipping option values."""
    return next(iter(job_args(args, value_opts)), "")


def load_visible(job_id):
    job = core.load(num_of(job_id)) if num_of(job_id) is not None else None
    return job if core.visible(job) else None


def num_of(job_id):
    m = re.match(r"^(?:Moab\.)?(\d+)", job_id or "")
    return int(m.group(1)) if m else None


def directives(script, prefix):
    """[(option, value)] from '#PBS -x value' / '#BSUB -x value' lines."""
    found = []
    for line in script.splitlines():
        if line.startswith(prefix + " "):
            words = line[len(prefix):].split(None, 1)
            if words:
                found.append((words[0], words[1].strip().strip('"') if len(words) > 1 else ""))
    return found


def read_script(args):
    path = next((a for a in args if not a.startswith("-")), None)
    if path and os.path.exists(path):
        return open(path).read()
    return sys.stdin.read()


# ------------------------------------------------------------------ PBS family
def pbs_submit(args, moab=False):
    script = read_script(args)
    opts = dict(directives(script, "#PBS"))
    name = opts.get("-N", "STDIN")
    home = os.path.expanduser("~" + os.environ.get("USER", "")) if os.environ.get("USER") else os.getcwd()
    ncpus = 1
    for key, value in directives(script, "#PBS"):
        m = re.search(r"(?:ppn|ncpus)=(\d+)", value) if key == "-l" else None
        if m:
            ncpus = int(m.group(1))
    env = core.keep_env(opts.get("-v", ""))
    env.update(PBS_O_WORKDIR=os.getcwd(), PBS_JOBNAME=name)
    job = core.submit(
        script, name=name, log=opts.get("-o", f"{os.getcwd()}/{name}.o{{id}}"), cwd=home,
        argv=["/bin/bash", "{script}"], env=env, ncpus=ncpus,
        extra={"env": {"PBS_JOBID": "{id}." + formats.SERVER}},
    )
    return out(f"\n{job['id']}\n" if moab else formats.pbs_id(job) + "\n")


def qstat(args):
    """``qstat [-x | -fx [-F json]] ID ...``: the jobs it knows on stdout, one stderr line per id it does not."""
    jobs, err, code = [], "", 0
    history = "-x" in args or "-fx" in args or "-H" in args
    for job_id in job_args(args):
        job = load_visible(job_id)
        if job is None:
            unknown = "Unknown Job Id Error" if FLAVOUR == "torque" else "Unknown Job Id"
            err, code = err + f"qstat: {unknown} {job_id}\n", 153
        elif FLAVOUR != "torque" and job["end_time"] and job["state"] != "running" and not history:
            err += f"qstat: {job_id} Job has finished, use -x or -H to obtain historical job information\n"
            code = code or 35
        else:
            jobs.append(job)
    if not jobs:
        return out(err=err, code=code)
    if FLAVOUR == "torque":
        if "-x" in args:
            return out(formats.torque_xml(jobs), err, code)
        return out("".join(f"{formats.pbs_id(j)} {j['state']}\n" for j in jobs), err, code)
    as_json = "json" in args and ("-F" in args or any(a.startswith("-F") for a in args))
    return out(formats.pbs_json(jobs) if as_json else formats.pbs_text(jobs), err, code)


def qdel(args):
    job_id = job_arg(args)
    why = core.cancel(num_of(job_id)) if num_of(job_id) is not None else "unknown"
    if why == "unknown":
        return out(err=f"qdel: Unknown Job Id {job_id}\n", code=153)
    if why == "finished":
        return out(err=f"qdel: Job has finished {job_id}\n", code=35)
    if why == "permission":
        return out(err=f"qdel: Unauthorized Request  {job_id}\n", code=159)
    return out()


def tracejob(args):
    """FAKE ``tracejob [-n DAYS] ID``: the log lines of any job the fake cluster ever ran (history)."""
    job_id = job_arg(args)
    job = core.load(num_of(job_id)) if num_of(job_id) is not None else None
    if job is None:
        return out(f"Job: {job_id}\n\n", f"tracejob: no matching job records located for {job_id}\n", 1)
    return out(formats.tracejob(job, pbs=FLAVOUR == "pbs"))


def mdiag(args):
    """``mdiag -j ID --xml`` one job; ``mdiag -j --xml`` every job Moab still holds."""
    after = args[args.index("-j") + 1] if "-j" in args and args.index("-j") + 1 < len(args) else "-"
    if after.startswith("-"):
        return out(formats.moab_xml([job for job in core.all_jobs() if core.visible(job)]))
    job = load_visible(after)
    return out(formats.moab_xml([job] if job else []))


def checkjob(args):
    """FAKE ``checkjob --xml ID``: the job element Moab keeps (the same window as mdiag)."""
    job_id = job_arg([a for a in args if a != "--xml"])
    job = load_visible(job_id)
    if job is None:
        return out(err=f"ERROR:  invalid job specified ({job_id})\n", code=1)
    return out(formats.moab_xml([job]))


def mjobctl(args):
    job_id = job_arg([a for a in args if a != "-c"])
    why = core.cancel(num_of(job_id)) if num_of(job_id) is not None else "unknown"
    if why in ("unknown", "finished"):
        return out(err=f"ERROR:  invalid job specified ({job_id})\n", code=1)
    if why == "permission":
        return out(err=f"ERROR:  user does not have access to job {job_id}\n", code=1)
    return out(f"job '{job_id}' cancelled\n")


# ------------------------------------------------------------------ LSF
def bsub(args):
    script = read_script(args)
    opts = dict(directives(script, "#BSUB"))
    name = opts.get("-J", "NONAME")
    log = opts.get("-o", "").replace("%J", "{id}")
    ncpus = int(opts.get("-n", "1") or 1)
    job = core.submit(
        script, name=name, log=log, cwd=opts.get("-cwd", os.getcwd()), argv=["/bin/bash", "{script}"],
        env=dict(os.environ), ncpus=ncpus, extra={"env": {"LSB_JOBID": "{id}"}},
    )
    return out(f"Job <{job['id']}> is submitted to default queue <normal>.\n")


def bjobs(args):
    fmt = args[args.index("-o") + 1] if "-o" in args else "jobid user stat exec_host job_name"
    fields = [f.split(":")[0].upper() for f in fmt.replace(",", " ").split()]
    as_json = "-json" in args
    entries = [load_visible(job_id) or job_id for job_id in job_args(args)]
    text, err = formats.bjobs(entries, fields, as_json)
    found = any(isinstance(e, dict) for e in entries)
    header = "" if as_json or "-noheader" in args or not found else " ".join(fields) + "\n"
    return out(header + text, err, 255 if any(isinstance(e, str) for e in entries) else 0)


def bhist(args):
    """FAKE ``bhist -l ID``: the events of any job the fake cluster ever ran (lsb.events)."""
    job_id = job_arg([a for a in args if a != "-l"])  # bhist's -l takes no value
    job = core.load(num_of(job_id)) if num_of(job_id) is not None else None
    if job is None:
        return out(err="No matching job found\n", code=255)
    return out(formats.bhist_long(job))


def bkill(args):
    job_id = job_arg(args)
    why = core.cancel(num_of(job_id)) if num_of(job_id) is not None else "unknown"
    if why == "unknown":
        return out(err=f"Job <{job_id}>: No matching job found\n", code=255)
    if why == "finished":
        return out(err=f"Job <{job_id}>: Job has already finished\n", code=255)
    if why == "permission":
        return out(err=f"Job <{job_id}>: User permission denied\n", code=255)
    return out(f"Job <{job_id}> is being terminated\n")


# ------------------------------------------------------------------ HTCondor
def condor_split_args(value):
    """HTCondor "new" arguments syntax -> argv (''=' and ""=" inside, '...' groups)."""
    value = value.strip()
    if not (value.startswith('"') and value.endswith('"')):
        return value.split()
    s, argv, cur, quoted, have, i = value[1:-1], [], "", False, False, 0
    while i < len(s):
        ch = s[i]
        if ch == '"' and s[i + 1 : i + 2] == '"':
            cur, have, i = cur + '"', True, i + 2
            continue
        if ch == "'":
            if quoted and s[i + 1 : i + 2] == "'":
                cur, i = cur + "'", i + 2
                continue
            quoted, have = not quoted, True
        elif ch.isspace() and not quoted:
            if have:
                argv.append(cur)
            cur, have = "", False
        else:
            cur, have = cur + ch, True
        i += 1
    if have:
        argv.append(cur)
    return argv


def condor_submit(args):
    text = read_script(args)
    desc = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.lower() == "queue":
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            desc[key.strip().lower()] = value.strip()
    getenv = desc.get("getenv", "false")
    env = dict(os.environ) if getenv.lower() == "true" else core.keep_env("" if getenv.lower() == "false" else getenv)
    log = desc.get("output", "").replace("$(Cluster)", "{id}").replace("$(Process)", "0")
    argv = [desc.get("executable", "/bin/false")] + condor_split_args(desc.get("arguments", ""))
    job = core.submit(
        text, name=desc.get("batch_name", "ID"), log=log, cwd=desc.get("initialdir", os.getcwd()), argv=argv,
        env=env, ncpus=int(desc.get("request_cpus", "1") or 1), extra={"env": {"_CONDOR_JOB_ID": "{id}.0"}},
    )
    return out(f"Submitting job(s).\n1 job(s) submitted to cluster {job['id']}.\n")


def _autoformat(args, jobs):
    opt = next((a for a in args if a.startswith("-af") or a.startswith("-autoformat")), None)
    if opt is None:
        return "".join(f"{j['id']}.0 {j['owner']} {formats.CONDOR[j['state']]}\n" for j in jobs)
    attrs = args[args.index(opt) + 1 :]
    sep = "\t" if ":" in opt and "t" in opt.split(":", 1)[1] else " "
    return "".join(sep.join(formats.condor_attr(j, a) for a in attrs) + "\n" for j in jobs)


def _job_ids_before_af(args):
    """condor_q/condor_history ids: positionals before -af (the attribute names come after it)."""
    cut = next((i for i, a in enumerate(args) if a.startswith("-af") or a.startswith("-autoformat")), len(args))
    return job_args(args[:cut])


def condor_q(args):
    jobs = [core.load(num_of(job_id)) for job_id in _job_ids_before_af(args)]
    in_queue = [j for j in jobs if j is not None and (j["state"] in ("queued", "running") or j["end_time"] is None)]
    return out(_autoformat(args, in_queue))


def condor_history(args):
    job = core.load(num_of(next(iter(_job_ids_before_af(args)), "")))
    ended = job is not None and job["end_time"] is not None and job["state"] != "running"
    return out(_autoformat(args, [job] if ended else []))


def condor_rm(args):
    job_id = job_arg(args)
    why = core.cancel(num_of(job_id)) if num_of(job_id) is not None else "unknown"
    if why:
        return out(err=f"Couldn't find/remove all jobs in cluster {job_id}\n", code=1)
    return out(f"All jobs in cluster {job_id} have been marked for removal\n")


COMMANDS = {
    "qsub": pbs_submit,
    "qstat": qstat,
    "qdel": qdel,
    "tracejob": tracejob,
    "msub": lambda a: pbs_submit(a, moab=True),
    "mdiag": mdiag,
    "checkjob": checkjob,
    "mjobctl": mjobctl,
    "canceljob": mjobctl,
    "bsub": bsub,
    "bjobs": bjobs,
    "bhist": bhist,
    "bkill": bkill,
    "condor_submit": condor_submit,
    "condor_q": condor_q,
    "condor_history": condor_history,
    "condor_rm": condor_rm,
}


def main(argv):
    if argv and argv[0] == "_run":
        core.run_job(argv[1])
        return 0
    if not argv or argv[0] not in COMMANDS:
        return out(err=f"fakesched: unknown command {argv[:1]}\n", code=2)
    core.log_call(argv)
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
