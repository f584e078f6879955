"""`klantreis metrics` that kills itself (SIGKILL) at its N-th offset commit: after the insert
of that batch, before Kafka records its offsets. N comes from KLANTREIS_TEST_CRASH_AT_COMMIT."""

from __future__ import annotations

import os
import signal
from typing import Any

from aiokafka import AIOKafkaConsumer

from klantreis.cli import main

CRASH_AT = int(os.environ["KLANTREIS_TEST_CRASH_AT_COMMIT"])
_commit = AIOKafkaConsumer.commit
_commits = 0


async def _commit_or_die(self: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> None:
    global _commits
    _commits += 1
    if _commits == CRASH_AT:
        print(f"killing myself before commit {_commits}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    await _commit(self, *args, **kwargs)


AIOKafkaConsumer.commit = _commit_or_die

if __name__ == "__main__":
    main(["metrics"])
