"""The newest request per session still waiting in a partition, read once when a generator is given the partition.

Why: a version reaches the versions changelog only after its page reached the storefront topic (the other order
lost pages on a crash), so a generator killed between the two leaves pages that its successor does not know were
published. The successor reads the requests again from the committed offset and, without this, served an older
request in a batch that did not hold the newer one already published: the storefront topic went back for that
session, and compaction would keep the older page. With the backlog read first, a request is served only if no
newer request of its session waits behind it in the partition; that newer one is not acked yet, so it is handled
(published, found stale, or dead-lettered with its reason) by this generator or the partition's next owner.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord

from streams.contracts.regen import RegenRequest
from streams.runtime.settings import Settings
from streams.runtime.topics import read_partitions

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Read:
    end: int  # the partition's end offset when it was read: past it the request stream itself is the truth
    newest: dict[str, int]


@dataclass(slots=True)
class Backlog:
    """Per assigned partition of the request topic: unread, or the newest version per session up to its end then."""

    settings: Settings
    unread: set[int] = field(default_factory=set)
    reads: dict[int, _Read] = field(default_factory=dict)
    assignment: int = 0  # counts rebalances: a read begun before one is dropped

    def assigned(self, partitions: set[int]) -> None:
        """A rebalance gave these partitions (again): each is read afresh at the first request that comes from it."""
        self.assignment += 1
        self.unread = set(partitions)
        self.reads = {}

    async def read(self, first_offsets: dict[int, int]) -> None:
        """Read the unread partitions among ``first_offsets`` (partition -> offset of the first request seen since
        the assignment) to their ends, for at most ``generator_backlog_read_s``. A read that fails or runs out of
        time is logged and skipped: an older page may then follow a newer one, as before this existed, and no
        request is dropped."""
        starts = {p: o for p, o in first_offsets.items() if p in self.unread}
        if not starts:
            return
        self.unread -= set(starts)
        assignment = self.assignment
        reading = read_partitions(self.settings, self.settings.topics.regen_topic, starts)
        try:
            records = await asyncio.wait_for(reading, self.settings.generator.generator_backlog_read_s)
        except Exception:  # the broker may be failing too; serving goes on without the backlog
            log.warning("request backlog not read", extra={"partitions": sorted(starts)}, exc_info=True)
            return
        if assignment != self.assignment:
            return  # a rebalance came meanwhile: its own reads follow
        for partition, start in starts.items():
            self.reads[partition] = _Read(end=start, newest={})
        for record in records:
            read = self.reads[record.partition]
            read.end = record.offset + 1
            _note(read.newest, record)

    def newest(self, session_id: str, partition: int) -> int:
        """The newest version of the session's requests in the partition's read (0: none known)."""
        read = self.reads.get(partition)
        return 0 if read is None else read.newest.get(session_id, 0)

    def passed(self, last_offsets: dict[int, int]) -> None:
        """The stream has handled these offsets: a read it has gone through is forgotten."""
        for partition, offset in last_offsets.items():
            read = self.reads.get(partition)
            if read is not None and offset >= read.end - 1:
                del self.reads[partition]


def _note(newest: dict[str, int], record: ConsumerRecord[bytes, bytes]) -> None:
    try:
        request = RegenRequest.from_json(record.value or b"")
    except (ValueError, TypeError, KeyError, AttributeError):
        return  # dead-lettered when the stream reaches it
    if isinstance(request.session_id, str) and type(request.version) is int:
        newest[request.session_id] = max(newest.get(request.session_id, 0), request.version)
