"""The local broker's cluster ids: one in 64 random ids would start with "-" otherwise, and the
storage tool then fails to format the broker's directory."""

from __future__ import annotations

import base64

from klantreis.local_kafka import cluster_id


def test_cluster_ids_are_kraft_ids_that_never_look_like_an_option() -> None:
    ids = [cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
