"""last_error as format_error makes it: storable on every database, bounded, head and tail kept."""

from __future__ import annotations

import pytest

from delayed.retry import LAST_ERROR_HEAD_LIMIT, LAST_ERROR_LIMIT, clean_error, format_error


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def _chain(links: int) -> None:
    """Raise a chain of `links` exceptions (each with its own traceback), the last a ValueError."""
    try:
        if links > 1:
            _chain(links - 1)
        else:
            raise KeyError("the first failure")
    except Exception as exc:
        raise ValueError(f"failure {links}") from exc


@pytest.mark.parametrize(
    ("message", "escaped"),
    [
        ("nul\x00byte", "nul\\x00byte"),
        ("bad\udcffbyte", "bad\\udcffbyte"),
        ("pair\ud83d\ude00", "\\ud83d\\ude00"),
    ],
)
def test_nul_and_lone_surrogates_are_escaped_so_every_driver_can_encode_it(
    message: str, escaped: str
) -> None:
    text = format_error(_raised(RuntimeError(message)))
    assert text.startswith(
        f"RuntimeError: {escaped}" if not message.startswith("pair") else "RuntimeError: pair"
    )
    assert escaped in text
    assert "\x00" not in text
    text.encode("utf-8")  # strict: raises on any surrogate left
    assert "Traceback (most recent call last)" in text


def test_plain_text_is_unchanged() -> None:
    text = "RuntimeError: snow ☃ and 💥 are fine\nTraceback ..."
    assert clean_error(text) == text


def test_a_long_traceback_keeps_the_head_line_and_the_tail() -> None:
    text = format_error(_raised_from(lambda: _chain(300)))
    assert len(text) <= LAST_ERROR_LIMIT
    head, marker, *_ = text.split("\n")
    assert head == "ValueError: failure 300"
    assert marker.startswith("[... ") and marker.endswith(" characters cut ...]")
    # The tail: the last exception's frames and line (the first failures are what went).
    assert text.endswith("ValueError: failure 300\n")
    assert "KeyError: 'the first failure'" not in text


def _raised_from(func) -> BaseException:
    try:
        func()
    except BaseException as caught:
        return caught
    raise AssertionError("expected an exception")


def test_a_huge_message_is_cut_to_the_limit_keeping_its_start_and_the_exception_line() -> None:
    text = format_error(_raised(RuntimeError("x" * 100_000 + "END")))
    assert len(text) <= LAST_ERROR_LIMIT
    head = text.split("\n", 1)[0]
    assert head == "RuntimeError: " + "x" * (LAST_ERROR_HEAD_LIMIT - len("RuntimeError: "))
    assert text.endswith("END\n")  # the traceback's last line repeats the message's end
    cut = int(text.split("\n")[1].split()[1])
    assert cut > 100_000 - LAST_ERROR_LIMIT


def test_the_cut_counts_what_went() -> None:
    text = "head\n" + "".join(f"line {i}\n" for i in range(5000))
    cleaned = clean_error(text, limit=500)
    first, marker, rest = cleaned.split("\n", 2)
    cut = int(marker.split()[1])
    assert first == "head"
    assert len(first) + 1 + cut + len(rest) == len(text)
    assert rest.endswith("line 4999\n") and rest.startswith("line ")


def test_an_exception_whose_str_raises_still_gets_a_last_error() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    text = format_error(_raised(Unprintable()))
    assert text.split("\n")[0].endswith("Unprintable: <Unprintable.__str__ failed>")
    assert "Traceback" in text
