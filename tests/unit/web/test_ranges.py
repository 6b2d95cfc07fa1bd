"""HTTP Range over an in-memory body, as Starlette >= 0.49.1 answers for files (RFC 9110 §14)."""

from __future__ import annotations

import pytest

from tapeline.web.ranges import Unsatisfiable, parse_range, ranged_response

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("items=0-1", None),  # another unit: ignored, whole body
        ("bytes=0-99", (0, 99)),
        ("bytes=500-", (500, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),  # a suffix longer than the body is the whole body
        ("bytes=990-5000", (990, 999)),  # the end is clipped
        ("bytes=0-1, 5-6", None),  # several ranges: the whole body (no multipart, no merging)
        ("bytes=9-3", None),  # malformed: ignored
        ("bytes=abc", None),
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_ranges_past_the_end_are_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, SIZE)


def test_responses_206_416_and_a_stale_if_range() -> None:
    body = bytes(range(256)) * 4
    part = ranged_response(
        body, media_type="audio/flac", etag="x", range_header="bytes=10-19", if_range=None
    )
    assert part.status_code == 206
    assert part.body == body[10:20]
    assert part.headers["content-range"] == "bytes 10-19/1024"
    assert part.headers["content-length"] == "10"
    gone = ranged_response(
        body, media_type="audio/flac", etag="x", range_header="bytes=2000-", if_range=None
    )
    assert (gone.status_code, gone.headers["content-range"]) == (416, "bytes */1024")
    stale = ranged_response(
        body, media_type="audio/flac", etag="x", range_header="bytes=10-19", if_range='"y"'
    )
    assert stale.status_code == 200
    assert stale.body == body
