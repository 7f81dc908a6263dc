"""Bad configuration stops the service with one clear sentence, not a traceback."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from app.cli import main as qaas
from app.cluster.connect import ClusterConfigError, discover
from app.config import ConfigError, leader_election_on, leader_identity, load_settings


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("QAAS_NODE_SERVICE_TYPE", "LoadBalancer", "QAAS_NODE_SERVICE_TYPE='LoadBalancer'"),
        ("QAAS_RESYNC_SECONDS", "-1", "QAAS_RESYNC_SECONDS='-1'"),
        ("QAAS_DATABASE_URL", "mysql://x/y", "QAAS_DATABASE_URL='mysql://x/y'"),
        ("QAAS_SERVICE_ACCOUNT", "no-colon", "QAAS_SERVICE_ACCOUNT='no-colon'"),
        ("QAAS_LEADER_ELECTION", "maybe", "QAAS_LEADER_ELECTION='maybe'"),
        # The renew deadline must be shorter than the lease, or the fence would outlive it.
        ("QAAS_LEASE_RENEW_DEADLINE", "15", "QAAS_LEASE_RENEW_DEADLINE=15"),
    ],
)
def test_a_bad_variable_is_named_in_one_sentence(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    named: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings()
    assert qaas(["migrate"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("qaas: ")
    assert named in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_cluster_settings_that_cannot_work_are_one_sentence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    with pytest.raises(ClusterConfigError, match=r"QAAS_KUBECONFIG names .* which does not exist"):
        discover("auto", "/nonexistent/kubeconfig")
    with pytest.raises(ClusterConfigError, match="QAAS_CLUSTER=kubeconfig, but neither"):
        discover("kubeconfig", None)
    with pytest.raises(ClusterConfigError, match="QAAS_CLUSTER=in-cluster, but"):
        discover("in-cluster", None)
    assert discover("auto", None) is None  # nothing configured: the sandbox


def test_leader_election_follows_the_database_unless_told() -> None:
    postgres = "postgresql+asyncpg://postgres@127.0.0.1/test"
    assert leader_election_on(load_settings(database_url=postgres))
    assert not leader_election_on(load_settings(database_url="sqlite+aiosqlite:///x.db"))
    assert not leader_election_on(load_settings(database_url=postgres, leader_election="off"))
    assert leader_election_on(
        load_settings(database_url="sqlite+aiosqlite:///x.db", leader_election="on")
    )
    assert leader_identity(load_settings(leader_identity="qaas-7d9f-abcde")) == "qaas-7d9f-abcde"
    assert leader_identity(load_settings()).endswith(f"-{os.getpid()}")  # hostname-pid
