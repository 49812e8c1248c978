"""Execution-host strings as each scheduler prints them -> the first host the hub connects to."""

import pytest

from batchspawner.core.hosts import condor_host, lsf_first_host, moab_first_host, pbs_first_host, torque_first_host

CASES = [
    ("pbs-chunks-with-ncpus", pbs_first_host, "node1/0*4+node2/0", "node1"),
    ("pbs-single", pbs_first_host, "node7/3", "node7"),
    ("pbs-fqdn", pbs_first_host, "node1.cluster.local/0*2", "node1.cluster.local"),
    ("pbs-empty", pbs_first_host, "", ""),
    ("torque-core-range", torque_first_host, "node1/0-3", "node1"),
    ("torque-range-and-more", torque_first_host, "node1/0-3+node2/0,2", "node1"),
    ("lsf-slots", lsf_first_host, "2*host1", "host1"),
    ("lsf-colon-list", lsf_first_host, "host1:host2", "host1"),
    ("lsf-slots-and-colon", lsf_first_host, "4*host1:2*host2", "host1"),
    ("lsf-blank-list", lsf_first_host, "host1 host2", "host1"),
    ("lsf-dash", lsf_first_host, "-", ""),
    ("condor-slot", condor_host, "slot1@host.domain", "host.domain"),
    ("condor-dynamic-slot", condor_host, "slot1_2@host.domain", "host.domain"),
    ("condor-undefined", condor_host, "undefined", ""),
    ("moab-alloc-list", moab_first_host, "node1:4,node2", "node1"),
]


@pytest.mark.parametrize("func,text,host", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_first_host(func, text, host):
    assert func(text) == host
