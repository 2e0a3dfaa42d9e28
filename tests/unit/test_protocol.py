"""The child -> master reports: what one side encodes, the other decodes, whatever the framing."""

from __future__ import annotations

import pytest

from delayed.supervisor import protocol
from delayed.supervisor.protocol import Booted, Decoder, Ended, Heartbeat, Malformed, Started, Unknown

REPORTS = [
    Booted("host:box pid:42"),
    Started(17, 12345.678901, 300.0, "delayed-job_3"),
    Heartbeat(4),
    Ended(17),
]


def test_every_report_survives_a_round_trip() -> None:
    for report in REPORTS:
        assert Decoder().feed(protocol.encode(report)) == [report]


def test_several_reports_in_one_write_come_back_in_order() -> None:
    assert Decoder().feed(protocol.encode(*REPORTS)) == REPORTS


def test_a_report_split_across_reads_comes_back_once_whole() -> None:
    data = protocol.encode(*REPORTS)
    decoder = Decoder()
    decoded = []
    for i in range(len(data)):  # one byte per read: the worst a pipe can do
        decoded += decoder.feed(data[i : i + 1])
    assert decoded == REPORTS


def test_the_wire_format_is_the_documented_lines() -> None:
    data = protocol.encode(Booted("host:h pid:1"), Started(5, 1.5, 2.0, "t"), Ended(5), Heartbeat(0))
    assert data == b"B host:h pid:1\nS 5 1.500000 2.000000 t\nE 5\nH 0\n"


@pytest.mark.parametrize(("name", "sent"), [("delayed job 1", "delayed_job_1"), ("", "-"), ("a\nb", "a_b")])
def test_a_thread_name_never_breaks_the_line(name: str, sent: str) -> None:
    [report] = Decoder().feed(protocol.encode(Started(1, 0.0, 1.0, name)))
    assert report == Started(1, 0.0, 1.0, sent)


def test_a_worker_name_keeps_its_spaces_but_never_a_line_break() -> None:
    assert Decoder().feed(protocol.encode(Booted("host:a\nb pid:1"))) == [Booted("host:a b pid:1")]


@pytest.mark.parametrize(
    "line",
    [b"H", b"H many", b"S 1 2.0 3.0", b"S x 2.0 3.0 t", b"S 1 soon 3.0 t", b"E", b"E 1.5"],
)
def test_a_known_kind_with_bad_fields_is_malformed(line: bytes) -> None:
    assert Decoder().feed(line + b"\n") == [Malformed(line.decode())]


def test_an_unknown_kind_is_unknown_and_the_next_line_still_decodes() -> None:
    assert Decoder().feed(b"Z what\n\nH 2\n") == [Unknown("Z what"), Unknown(""), Heartbeat(2)]


def test_bytes_that_are_not_utf8_do_not_raise() -> None:
    [report] = Decoder().feed(b"B host:\xff pid:1\n")
    assert isinstance(report, Booted) and report.worker.startswith("host:")
    assert Decoder().feed(b"H \xff\n") == [Malformed("H \ufffd")]


def test_a_partial_line_is_kept_until_its_newline() -> None:
    decoder = Decoder()
    assert decoder.feed(b"H 1\nE 4") == [Heartbeat(1)]
    assert decoder.feed(b"2\n") == [Ended(42)]
