"""The v1 topics' wire format: records as the services wrote them before must read the same.

`data/records-v1.tsv` holds records as klantreis's earlier (pydantic) models encoded them, one
per line after its type; the topics hold such records. A reader decodes each into its record
type, and writing it again gives the same bytes, so old and new services can share a topic
during a deploy. Fields added since come last, as null for an old record (readers ignore fields
they do not know).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.events import DeadLetter, Event, KafkaRecord, RecordError
from contracts.journeys import IdentityLink, PhaseTransition, SessionSnapshot, Signal

TYPES: dict[str, type[KafkaRecord]] = {
    kind.__name__: kind
    for kind in (Event, DeadLetter, SessionSnapshot, PhaseTransition, Signal, IdentityLink)
}
# Optional fields added to a record type after its lines were written, in order.
ADDED_SINCE = {
    "SessionSnapshot": ("journey_number", "session_number"),
    "PhaseTransition": ("journey_number",),
}
WRITTEN_BEFORE = [
    line.split("\t", 1)
    for line in (Path(__file__).parent / "data" / "records-v1.tsv").read_text().splitlines()
]


@pytest.mark.parametrize(("type_name", "line"), WRITTEN_BEFORE)
def test_a_record_written_before_reads_and_writes_the_same_bytes(type_name: str, line: str) -> None:
    record = TYPES[type_name].from_bytes(line.encode())
    added = ADDED_SINCE.get(type_name, ())
    assert (
        record.to_bytes()
        == line.encode()[:-1] + b"".join(b',"%s":null' % name.encode() for name in added) + b"}"
    )


def test_every_record_type_has_a_line_written_before() -> None:
    assert {type_name for type_name, _ in WRITTEN_BEFORE} == set(TYPES)


def test_a_record_of_another_schema_version_is_refused() -> None:
    line = WRITTEN_BEFORE[0][1].replace('"schema_version":1', '"schema_version":2')
    with pytest.raises(RecordError, match="schema_version"):
        Event.from_bytes(line.encode())
