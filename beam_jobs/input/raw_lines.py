"""Text lines before CSV parsing: bad bytes become rejected rows, every row gets its file offset.

pyarrow's CSV reader fails a whole block on one byte that is not UTF-8
("CSV conversion error to string: invalid UTF8 data"), so a single bad row
used to fail the job. ``screen`` runs first, on the bytes of one read task:

- a line that does not decode in the schema's ``encoding``, holds a NUL byte,
  leaves a double quote open (rows never span lines), or has a field longer
  than ``max_field_bytes`` is rejected with its reason
  and its raw bytes (``\\xNN``-escaped) and never reaches pyarrow;
- lines of another encoding (latin-1, cp1252, ...) are re-encoded to UTF-8;
- a UTF-8 byte-order mark at the file start, header/skip lines and comment
  lines are dropped;
- each remaining non-empty line gets its byte offset in the (decompressed)
  file: the row locator of score outputs (``pipeline.parsing.OFFSET_COLUMN``).

The common case (valid UTF-8, no NUL, no long line, no comments) is checked
with a few whole-buffer C calls and costs no Python per line.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ctrflow.pipeline.parsing import RejectedRow

BOM = b"\xef\xbb\xbf"
_NL = 10
_CR = 13


@dataclasses.dataclass
class Screened:
    """The UTF-8 lines for pyarrow, the offset of each non-empty one, and the lines rejected here."""

    data: bytes
    offsets: np.ndarray  # int64 [rows]: file offset of each non-empty line of ``data``, in order
    rejected: list[RejectedRow]
    longest_line: int = 0


def escaped(line: bytes) -> str:
    """A raw line as text, undecodable bytes as ``\\xNN`` (what the rejected-rows file holds)."""
    return line.rstrip(b"\r\n").decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _line_starts(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(start, end without the newline) of every line of ``data``."""
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == _NL)
    starts = np.concatenate([[0], nl + 1]).astype(np.int64)
    ends = np.concatenate([nl, [len(data)]]).astype(np.int64)
    if starts[-1] == len(data):  # the text ends with a newline: no line after it
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends


def _valid_utf8(data: bytes) -> bool:
    # NumPy's max releases the GIL and was faster than bytes.isascii, which holds it
    if np.frombuffer(data, np.uint8).max(initial=0) < 0x80:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _content_lengths(data: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Line lengths without a trailing CR (pyarrow reads CRLF as one newline)."""
    buf = np.frombuffer(data, np.uint8)
    has_cr = np.zeros(len(ends), bool)
    nonempty = ends > starts
    has_cr[nonempty] = buf[ends[nonempty] - 1] == _CR
    return ends - starts - has_cr


def screen(data: bytes, *, path: str, base_offset: int, at_file_start: bool, skip_lines: int,
           comment: str | None, encoding: str, delimiter: str, max_field_bytes: int,
           quoting: bool = True) -> Screened:
    """Screens the lines of ``data`` (which starts at ``base_offset`` in ``path``)."""
    if at_file_start:
        if data.startswith(BOM):
            data, base_offset = data[len(BOM):], base_offset + len(BOM)
        for _ in range(skip_lines):
            nl = data.find(b"\n")
            cut = len(data) if nl < 0 else nl + 1
            data, base_offset = data[cut:], base_offset + cut
    if not data:
        return Screened(b"", np.zeros(0, np.int64), [])
    starts, ends = _line_starts(data)
    lengths = _content_lengths(data, starts, ends)
    prefix = comment.encode(encoding) if comment else None
    has_comment = prefix is not None and (data.startswith(prefix) or b"\n" + prefix in data)
    if (encoding == "utf-8" and not has_comment and b"\x00" not in data
            and (lengths.max(initial=0) <= max_field_bytes) and not (quoting and _odd_quotes(data, starts))
            and _valid_utf8(data)):
        return Screened(data, base_offset + starts[lengths > 0], [], int(lengths.max(initial=0)))
    return _screen_lines(data, starts, ends, lengths, path=path, base_offset=base_offset, prefix=prefix,
                         encoding=encoding, delimiter=delimiter, max_field_bytes=max_field_bytes, quoting=quoting)


def _odd_quotes(data: bytes, starts: np.ndarray) -> bool:
    """Whether some line has an odd number of double quotes (a quote left open at the line end)."""
    if b'"' not in data:
        return False
    quotes = (np.frombuffer(data, np.uint8) == ord('"')).astype(np.int64)
    return bool((np.add.reduceat(quotes, starts) % 2).any())


def _screen_lines(data: bytes, starts: np.ndarray, ends: np.ndarray, lengths: np.ndarray, *, path: str,
                  base_offset: int, prefix: bytes | None, encoding: str, delimiter: str,
                  max_field_bytes: int, quoting: bool) -> Screened:
    """The per-line path: only for tables with a bad line, comments, or a non-UTF-8 encoding."""
    kept: list[bytes] = []
    offsets: list[int] = []
    rejected: list[RejectedRow] = []
    sep = delimiter.encode(encoding)
    for start, end, length in zip(starts.tolist(), ends.tolist(), lengths.tolist()):
        line = data[start:end]
        if length == 0 or (prefix is not None and line.startswith(prefix)):
            continue
        offset = base_offset + start
        reason = None
        if b"\x00" in line:
            reason = f"NUL byte at position {line.index(0)}"
        elif quoting and line.count(b'"') % 2:  # rows end at a newline: the quote can never close
            reason = "unterminated quote"
        else:
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError as e:
                reason = f"not valid {encoding}: byte 0x{line[e.start]:02x} at position {e.start}"
            else:
                if length > max_field_bytes:
                    longest = max(len(f) for f in line.split(sep))
                    if longest > max_field_bytes:
                        field = [len(f) for f in line.split(sep)].index(longest)
                        reason = (f"field {field + 1} is {longest} bytes, over the schema's max_field_bytes "
                                  f"{max_field_bytes}")
        if reason is not None:
            rejected.append(RejectedRow(source=path, row=escaped(line), reason=reason, offset=offset))
            continue
        kept.append(line if encoding == "utf-8" else text.encode("utf-8"))
        offsets.append(offset)
    body = b"\n".join(kept) + b"\n" if kept else b""
    return Screened(body, np.asarray(offsets, np.int64), rejected, max((len(x) for x in kept), default=0))
