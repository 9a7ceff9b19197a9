"""An incremental server-sent events parser, fed bytes as they come off the socket.

It follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (even
when a CRLF is split between two chunks), lines starting with ":" are comments
(MiMo's keep-alives), several `data:` lines join with "\\n", and an event is
dispatched at a blank line. One event may not grow beyond `max_event_bytes`, so
a broken upstream cannot make us buffer without end.
"""

import re
from dataclasses import dataclass

DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ServerSentEvent:
    data: str
    # None when the event had no `event:` field (OpenAI format never sends one).
    event: str | None = None
    id: str | None = None


class EventTooLarge(ValueError):
    pass


class SSEParser:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._pending = bytearray()
        self._at_start = True
        # A chunk ended in "\r": if the next one starts with "\n", that "\n"
        # belongs to the same line end.
        self._skip_lf = False
        self._data: list[str] = []
        self._data_size = 0
        self._event: str | None = None
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if not chunk:
            return []
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        self._pending += chunk
        if self._at_start:
            if len(self._pending) < len(_BOM) and _BOM.startswith(self._pending):
                return []
            if self._pending.startswith(_BOM):
                del self._pending[: len(_BOM)]
            self._at_start = False
        events = []
        start = 0
        if b"\r" not in self._pending:
            # As almost every stream comes: lines end in LF alone, and splitting is much cheaper.
            *lines, rest = bytes(self._pending).split(b"\n")
            for line in lines:
                if (event := self._take_line(line)) is not None:
                    events.append(event)
            start = len(self._pending) - len(rest)
        else:
            for match in _LINE_END.finditer(self._pending):
                event = self._take_line(bytes(self._pending[start : match.start()]))
                if event is not None:
                    events.append(event)
                start = match.end()
                if match.group() == b"\r" and start == len(self._pending):
                    self._skip_lf = True
        del self._pending[:start]
        if len(self._pending) + self._data_size > self.max_event_bytes:
            raise EventTooLarge(f"an event grew beyond {self.max_event_bytes} bytes")
        return events

    def close(self) -> list[ServerSentEvent]:
        """The last event, if its lines arrived whole but its blank line did not.

        A half line at the end is dropped, as the standard says: it is what a
        cut connection leaves, and it would only parse as broken JSON.
        """
        self._pending.clear()
        event = self._dispatch()
        return [event] if event is not None else []

    def _take_line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        match name:
            case "data":
                self._data.append(value)
                self._data_size += len(raw)
                if self._data_size > self.max_event_bytes:
                    raise EventTooLarge(f"an event grew beyond {self.max_event_bytes} bytes")
            case "event":
                self._event = value
            case "id" if "\0" not in value:
                self._last_id = value
        # "retry" and unknown fields are ignored, as the standard says.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._data_size, self._event = [], 0, None
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event, id=self._last_id)
