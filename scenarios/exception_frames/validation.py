"""Record decoding for the exception_frames scenario.

``decode_record`` copies the raw record into a 16 KiB working buffer before
validating it.  Records with a bad checksum raise ``ValueError``; the
exception's traceback references this function's frame, and with it the
``payload`` buffer.
"""

from __future__ import annotations

BUFFER_SIZE = 16 * 1024


class Record:
    __slots__ = ("fields", "record_id")

    def __init__(self, record_id: int, fields: list[bytes]) -> None:
        self.record_id = record_id
        self.fields = fields


def checksum(data: bytes | bytearray) -> int:
    return sum(data) & 0xFF


def decode_record(record_id: int, raw: bytes) -> Record:
    payload = bytearray(BUFFER_SIZE)  # working copy, padded to the block size
    body, expected = raw[:-1], raw[-1]
    payload[: len(body)] = body
    if checksum(payload) != expected:
        raise ValueError(f"record {record_id}: bad checksum")  # LEAK-SITE
    return Record(record_id, bytes(payload[: len(body)]).split(b","))
