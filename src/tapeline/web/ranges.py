"""HTTP Range (RFC 9110 §14) over a decrypted recording held in memory.

Recordings are encrypted at rest, so Starlette's `FileResponse` (which does Range for files on
disk) cannot serve them without writing plaintext to disk. This answers the same way Starlette
≥ 0.49.1 does for one range: `206` with `Content-Range`, `416` with `Content-Range: bytes */size`
for an unsatisfiable one, and `Accept-Ranges: bytes` always. Several ranges are answered with the
whole body (`200`), which RFC 9110 allows and which avoids the range-merging cost behind
CVE-2025-62727.
"""

from __future__ import annotations

import re

from starlette.responses import Response

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class Unsatisfiable(Exception):  # noqa: N818  # named for the HTTP outcome it stands for
    """The range lies outside the body."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single (first, last) byte range asked for, or None to send the whole body.

    Raises:
        Unsatisfiable: a well-formed single range that selects nothing.
    """
    if not header or not header.startswith("bytes="):
        return None
    specs = header[len("bytes=") :].split(",")
    if len(specs) != 1:
        return None
    match = _SPEC.match(specs[0])
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first_text, last_text = match.groups()
    if not first_text:  # suffix range: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise Unsatisfiable
        return max(size - length, 0), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size:
        raise Unsatisfiable
    if last < first:
        return None
    return first, min(last, size - 1)


def ranged_response(  # noqa: PLR0913  # the body, its labels and the request's range headers
    data: bytes,
    *,
    media_type: str,
    etag: str,
    range_header: str | None,
    if_range: str | None,
    disposition: str = "inline",
) -> Response:
    """A 200, 206 or 416 answer for `data` and the request's Range headers."""
    size = len(data)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{etag}"',
        "Content-Disposition": disposition,
        "Cache-Control": "no-store",
    }
    if if_range is not None and if_range.strip() != f'"{etag}"':
        range_header = None  # the client's copy is stale: send it all
    try:
        span = parse_range(range_header, size)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return Response(b"", status_code=416, headers=headers, media_type=media_type)
    if span is None:
        return Response(data, media_type=media_type, headers=headers)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(data[first : last + 1], status_code=206, media_type=media_type, headers=headers)
