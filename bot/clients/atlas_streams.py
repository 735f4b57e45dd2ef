"""Atlas streaming reads: `bulk_download` (JSON array or CSV), `live` NDJSON and the SSE `stream`.

The incremental readers (`SseParser`, `JsonArrayReader`, `CsvRecordReader`) are pure and raise only
`MalformedResponse`; the async functions run them over an `HttpService` stream so a large download
never sits in memory as one body. `AtlasClient` exposes these as methods.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from bot.clients import atlas_wire as w
from bot.clients.atlas_wire import AtlasRow, StreamEvent
from bot.errors import BotError
from bot.http import HttpService, Response

Output = Literal["json", "csv"]
MAX_ELEMENT_CHARS = 16 * 1024 * 1024


def error_for(resp: Response) -> BotError:
    """The typed error of a refused Atlas request, with Atlas's `error: details`."""
    return resp.error(w.error_message(resp.data, resp.status))




class SseParser:
    """Incremental Server-Sent Events parser: feed it lines (without their newline), get events."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> StreamEvent | None:
        """One line; returns the event a blank line completes, if any."""
        if line == "":
            if not self._data and not self._event:
                return None
            event, text = self._event or "message", "\n".join(self._data)
            self._event, self._data = "", []
            return decode_event(event, text)
        if line.startswith(":"):
            return None  # a comment (keepalive)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None  # `id`, `retry` and unknown fields are ignored, as the SSE spec says


def decode_event(event: str, text: str) -> StreamEvent:
    """An SSE event with its data decoded: JSON when it is JSON; a `data` event must carry a row."""
    try:
        data: Any = json.loads(text, parse_float=Decimal)
    except ValueError:
        data = text
    if event == w.SSE_DATA:
        return StreamEvent(event, data, w.parse_flat_row(data))
    return StreamEvent(event, data)


class JsonArrayReader:
    """Incremental reader of one JSON array of objects (`[{...},{...}]`) arriving in chunks."""

    def __init__(self) -> None:
        self._buf = ""
        self._started = False
        self._ended = False
        self._decoder = json.JSONDecoder(parse_float=Decimal)

    def feed(self, text: str) -> Iterator[Any]:
        """Add text; yield every array element now complete."""
        self._buf += text
        while True:
            buf = self._buf.lstrip()
            if not self._started:
                if not buf:
                    self._buf = ""
                    return
                if buf[0] != "[":
                    raise w.malformed("download is not a JSON array")
                self._started, buf = True, buf[1:].lstrip()
            if self._ended:
                if buf:
                    raise w.malformed("text after the end of the JSON array")
                self._buf = ""
                return
            if buf.startswith(","):
                buf = buf[1:].lstrip()
            if buf.startswith("]"):
                self._ended, self._buf = True, buf[1:]
                continue
            try:
                value, end = self._decoder.raw_decode(buf)
            except ValueError:
                self._buf = buf  # an element still arriving (or garbage: `close` will tell)
                if len(buf) > MAX_ELEMENT_CHARS:
                    raise w.malformed("JSON array element over the size cap") from None
                return
            self._buf = buf[end:]
            yield value

    def close(self) -> None:
        """The body ended: it must have been one whole array."""
        if not self._ended or self._buf.strip():
            raise w.malformed("download ended before the JSON array did")


class CsvRecordReader:
    """Incremental CSV reader for `bulk_download?output=csv`: header, then one `AtlasRow` per record.

    Lines are joined until the record's quotes balance, so a quoted cell holding a newline stays whole.
    Cells are the JSON spelling of numbers, booleans and objects, or plain text; an empty cell is a
    missing value and is left out of `values`.
    """

    def __init__(self) -> None:
        self._header: list[str] | None = None
        self._pending = ""

    def feed_line(self, line: str) -> AtlasRow | None:
        """One physical line; the row it completes, if any."""
        record = f"{self._pending}\n{line}" if self._pending else line
        if record.count('"') % 2:
            self._pending = record
            return None
        self._pending = ""
        if not record.strip():
            return None
        try:
            cells = next(csv.reader([record]))
        except (csv.Error, StopIteration):
            raise w.malformed("unreadable CSV record") from None
        if self._header is None:
            if not cells or cells[0] != w.F_TIMESTAMP:
                raise w.malformed(f"CSV header does not start with {w.F_TIMESTAMP!r}")
            self._header = cells
            return None
        if len(cells) > len(self._header):
            raise w.malformed("CSV record has more cells than the header")
        values = {k: csv_cell(c) for k, c in zip(self._header[1:], cells[1:], strict=False) if c != ""}
        return AtlasRow(w.parse_time(cells[0], w.F_TIMESTAMP), values)

    def close(self) -> None:
        """The body ended: no record may be left half-read, and the header must have come."""
        if self._pending:
            raise w.malformed("CSV ended inside a quoted cell")
        if self._header is None:
            raise w.malformed("CSV download has no header")


def csv_cell(cell: str) -> Any:
    """A CSV cell: JSON (number, boolean, object, array) when it parses as such, else the text."""
    if cell[:1] in "-0123456789{[tfn":
        try:
            return json.loads(cell, parse_float=Decimal)
        except ValueError:
            pass
    return cell


# ---------------------------------------------------------------------------------------------- I/O


def _range_params(dataset_id: int, start: datetime | None, end: datetime | None) -> dict[str, str]:
    params = {w.Q_DATASET: str(int(dataset_id))}
    if start is not None:
        params[w.Q_START] = w.wire_time(start)
    if end is not None:
        params[w.Q_END] = w.wire_time(end)
    return params


async def download_chunks(http: HttpService, dataset_id: int, output: Output = "json",
                          start: datetime | None = None, end: datetime | None = None) -> AsyncGenerator[bytes, None]:
    """The raw `bulk_download` body as it arrives (for saving to a file)."""
    params = {**_range_params(dataset_id, start, end), w.Q_OUTPUT: output}
    async with http.stream("GET", w.ROUTE_BULK_DOWNLOAD, params=params, error_for=error_for) as s:
        async for chunk in s.chunks():
            yield chunk


async def bulk_download(http: HttpService, dataset_id: int, output: Output = "json",
                        start: datetime | None = None, end: datetime | None = None) -> AsyncGenerator[AtlasRow, None]:
    """Every row (ascending) of `bulk_download`, parsed as the body streams in, in either format."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    chunks = download_chunks(http, dataset_id, output, start, end)
    try:
        if output == "csv":
            reader = CsvRecordReader()
            async for line in _lines(chunks, decoder):
                if (row := reader.feed_line(line)) is not None:
                    yield row
            reader.close()
        else:
            array = JsonArrayReader()
            async for chunk in chunks:
                for obj in array.feed(_decode(decoder, chunk)):
                    yield w.parse_row(obj)
            for obj in array.feed(_decode(decoder, b"", final=True)):
                yield w.parse_row(obj)
            array.close()
    finally:
        await chunks.aclose()


async def live(http: HttpService, dataset_id: int, limit: int = 1000) -> AsyncGenerator[AtlasRow, None]:
    """The newest `limit` rows, ascending, from the NDJSON `live` endpoint."""
    params = {w.Q_DATASET: str(int(dataset_id)), w.Q_LIMIT: str(int(limit))}
    async with http.stream("GET", w.ROUTE_LIVE, params=params, error_for=error_for) as s:
        async for raw in s.lines():
            if raw.strip():
                yield w.parse_flat_row(json_line(raw))


async def stream(http: HttpService, dataset_id: int, poll_interval: float = 2.0,
                 read_timeout: float | None = None) -> AsyncGenerator[StreamEvent, None]:
    """SSE events of a dataset until the server ends the stream or the caller closes the iterator."""
    params = {w.Q_DATASET: str(int(dataset_id)), w.Q_POLL: f"{poll_interval:g}"}
    idle = read_timeout or max(http.timeouts.stream_idle, 3 * poll_interval)
    parser = SseParser()
    async with http.stream("GET", w.ROUTE_STREAM, params=params, error_for=error_for,
                           headers={"Accept": "text/event-stream"}, read_timeout=idle) as s:
        async for raw in s.lines():
            event = parser.feed(raw.decode("utf-8", "replace"))
            if event is not None:
                yield event


def _decode(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool = False) -> str:
    try:
        return str(decoder.decode(chunk, final))
    except UnicodeDecodeError:
        raise w.malformed("download is not UTF-8") from None


async def _lines(chunks: AsyncIterator[bytes], decoder: codecs.IncrementalDecoder) -> AsyncIterator[str]:
    buf = ""
    async for chunk in chunks:
        buf += _decode(decoder, chunk)
        *complete, buf = buf.split("\n")
        for line in complete:
            yield line.removesuffix("\r")
    buf += _decode(decoder, b"", final=True)
    if buf:
        yield buf.removesuffix("\r")


def json_line(raw: bytes) -> Any:
    """One NDJSON line as JSON."""
    try:
        return json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise w.malformed("NDJSON line is not JSON") from None
