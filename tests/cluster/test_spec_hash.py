"""A StatefulSet's spec hash never changes for the same template: live objects carry it, and a
different digest would make every StatefulSet look drifted (and be replaced) after an upgrade.
It is the digest of the standard library's canonical JSON, whichever encoder writes it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from app.cluster.objects import NodeObjects, spec_hash
from app.domain.enums import Consensus, NodeRole


def reference(template: dict[str, Any]) -> str:
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


ANNOTATIONS = [
    (), (("example.com/team", "blue"),), (("example.com/note", 'say "hi"'),),
    (("example.com/path", "C:\\data"),), (("example.com/owner", "Zoë"),),
    (("example.com/line", "a\nb\tc\x01\x7f"),), (("example.com/sep", "\u2028 €"),),
]  # fmt: skip


@pytest.mark.parametrize("annotations", ANNOTATIONS)
def test_the_spec_hash_is_the_canonical_json_digest(
    annotations: tuple[tuple[str, str], ...],
) -> None:
    spec = NodeObjects(
        network_id="n1", node_id="d1", network="acme", node="peer-1", role=NodeRole.PEER,
        consensus=Consensus.RAFT, image="narayanprusty/qnm", service_type="ClusterIP",
        installation="qaas", pod_annotations=annotations,
    )  # fmt: skip
    template = spec.pod_template("10.96.0.20", "10.96.0.10")
    assert spec_hash(template) == reference(template)
    assert spec.statefulset("10.96.0.20", "10.96.0.10")["metadata"]["annotations"][
        "qaas.dev/spec-hash"
    ] == reference(template)
