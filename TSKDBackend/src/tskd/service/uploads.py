"""Receiving ``multipart/form-data`` uploads: streamed to disk in chunks, size-limited.

The request body is parsed as it arrives (``python-multipart``'s streaming parser) and each file
part is written straight into a temporary folder of the workspace; a body is never held whole in
memory. Limits are checked while receiving: a file over the limit stops being written and the
rest of the body is read and dropped (up to a cap) so that the client gets a clean 413 answer.
A body that stalls, trickles or takes too long is cut by :mod:`tskd.service.bodylimits` (408, the
connection closed); here it looks like a client that went away. The caller owns the folder and
removes it whatever happens (so a partial file never outlives its request).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import anyio
from starlette.requests import ClientDisconnect, Request

from tskd.data.image import IMAGE_SUFFIXES, image_suffix
from tskd.service.errors import (
    BadRequest,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
)
from tskd.service.storage import check_file_name

try:  # the package's import name changed in python-multipart 0.0.13
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - older python-multipart
    from multipart.exceptions import FormParserError  # type: ignore[no-redef]
    from multipart.multipart import MultipartParser, parse_options_header  # type: ignore[no-redef]

__all__ = ["ReceivedFile", "ReceivedForm", "UPLOAD_SUFFIXES", "receive_form", "discard_body"]

logger = logging.getLogger(__name__)

#: File endings accepted for uploaded images and labels (single files SimpleITK reads).
UPLOAD_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s not in (".dcm", ".mhd"))
_FLUSH_BYTES = 1 << 20  # hand the parser 1 MiB at a time (one thread hop per MiB)
_DRAIN_EXTRA = 64 << 20  # after a refusal, read at most this much more of the body
_MALFORMED = ("the multipart body is malformed (damaged part headers or boundaries); send the files again "
              "as multipart/form-data")


@dataclass
class ReceivedFile:
    """One file part, stored at ``path`` (named after the form field, with the client's ending)."""

    field: str
    filename: str
    path: Path
    size: int = 0


@dataclass
class ReceivedForm:
    """The text fields and files of a multipart body."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, ReceivedFile] = field(default_factory=dict)


class _FormWriter:
    """The parser's callbacks: route each part to a text buffer or a file in ``folder``."""

    def __init__(self, folder: Path, file_fields: tuple[str, ...], text_fields: tuple[str, ...],
                 max_file_bytes: int, max_text_bytes: int,
                 field_checks: dict[str, Callable[[str], object]] | None = None,
                 suffixes: tuple[str, ...] = UPLOAD_SUFFIXES, kind: str = "image",
                 limit_option: str = "--max-upload-mb") -> None:
        self.folder = folder
        self.suffixes = suffixes
        self.kind = kind
        self.limit_option = limit_option
        self.field_checks = field_checks or {}
        self.file_fields = file_fields
        self.text_fields = text_fields
        self.max_file_bytes = max_file_bytes
        self.max_text_bytes = max_text_bytes
        self.form = ReceivedForm()
        self.error: ServiceError | None = None
        self.finished = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._text: bytearray | None = None
        self._file: ReceivedFile | None = None
        self._stream: BinaryIO | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def fail(self, error: ServiceError) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    # -- callbacks ----------------------------------------------------------------------------
    def _part_begin(self) -> None:
        self._headers = {}
        self._name, self._text, self._file = None, None, None

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        if self.error is not None:
            return
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        known = self.file_fields + self.text_fields
        if name not in known:
            self.fail(BadRequest(f"unexpected form field {name!r}; this route takes {', '.join(known)}"))
            return
        if name in self.form.fields or name in self.form.files:
            self.fail(BadRequest(f"form field {name!r} is sent twice; send it once"))
            return
        self._name = name
        if name in self.text_fields:
            self._text = bytearray()
            return
        client_name = check_file_name(filename.decode("utf-8", "replace") if filename is not None else None, name)
        suffix = image_suffix(client_name) if self.suffixes is UPLOAD_SUFFIXES else _suffix(client_name, self.suffixes)
        if suffix not in self.suffixes:
            self.fail(UnsupportedMediaType(
                f"'{name}' file {client_name!r} is not a supported {self.kind} file; send one of "
                f"{', '.join(self.suffixes)}"
            ))
            return
        self._file = ReceivedFile(name, client_name, self.folder / f"{name}{suffix}")
        self._stream = open(self._file.path, "xb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        size = end - start
        if self._text is not None:
            if len(self._text) + size > self.max_text_bytes:
                self.fail(BadRequest(f"form field {self._name!r} is longer than {self.max_text_bytes} bytes"))
                return
            self._text.extend(data[start:end])
        elif self._file is not None and self._stream is not None:
            self._file.size += size
            if self._file.size > self.max_file_bytes:
                limit = self.max_file_bytes / (1024 * 1024)
                self.fail(PayloadTooLarge(
                    f"'{self._file.field}' file {self._file.filename!r} is larger than the server's limit of "
                    f"{limit:g} MB; the server's {self.limit_option} option sets it"
                ))
                return
            self._stream.write(data[start:end])

    def _part_end(self) -> None:
        if self.error is not None or self._name is None:
            return
        if self._text is not None:
            try:
                value = self._text.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(BadRequest(f"form field {self._name!r} is not UTF-8 text"))
                return
            check = self.field_checks.get(self._name)
            if check is not None:
                try:
                    check(value)  # e.g. refuse an unsafe case name before its files arrive
                except ServiceError as exc:
                    self.fail(exc)
                    return
            self.form.fields[self._name] = value
        elif self._file is not None:
            self.close()
            self.form.files[self._name] = self._file
        self._name, self._text, self._file = None, None, None

    def _end(self) -> None:
        self.finished = True


async def receive_form(
    request: Request,
    folder: Path,
    *,
    file_fields: tuple[str, ...],
    text_fields: tuple[str, ...] = (),
    max_file_bytes: int,
    max_text_bytes: int = 4096,
    field_checks: dict[str, Callable[[str], object]] | None = None,
    suffixes: tuple[str, ...] = UPLOAD_SUFFIXES,
    kind: str = "image",
    limit_option: str = "--max-upload-mb",
) -> ReceivedForm:
    """Stream a multipart body into ``folder``.

    Args:
        request: the incoming request (its body is consumed).
        folder: an empty folder of the workspace's ``tmp/`` that receives the files.
        file_fields: names of the file parts accepted (``image``, ``label``).
        text_fields: names of the text parts accepted (``name``, ``replace``).
        max_file_bytes: the largest accepted file.
        max_text_bytes: the longest accepted text field.
        field_checks: text field name -> check raising :class:`ServiceError`, run as soon as the
            field has arrived (send such fields before the files to fail fast).
        suffixes: file endings accepted (default: the image formats).
        kind: what the files are, for the 415 message (``image``, ``weights``).
        limit_option: the server option that sets ``max_file_bytes``, for the 413 message.

    Returns:
        The text fields and the files written (empty files are refused).

    Raises:
        ServiceError: 400 empty or malformed body, unknown or repeated fields, unsafe file name;
            413 file over the limit; 415 not multipart or not an image file type; 507 the
            server cannot write the file.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if request.headers.get("content-length") == "0":
        raise BadRequest(f"the request body is empty; send multipart/form-data with {', '.join(file_fields)}")
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        await discard_body(request)
        raise UnsupportedMediaType("send the files as multipart/form-data (with a boundary)")
    writer = _FormWriter(folder, file_fields, text_fields, max_file_bytes, max_text_bytes, field_checks,
                         suffixes=suffixes, kind=kind, limit_option=limit_option)
    try:
        parser = MultipartParser(options[b"boundary"], writer.callbacks())
    except (FormParserError, ValueError) as exc:
        logger.info("malformed multipart body: %s", exc)
        await discard_body(request)
        raise BadRequest(_MALFORMED) from None

    def feed(data: bytes) -> None:
        try:
            parser.write(data)
        except FormParserError as exc:
            logger.info("malformed multipart body: %s", exc)  # the parser's words are for the log, not the client
            writer.fail(BadRequest(_MALFORMED))
        except ServiceError as exc:  # raised by a callback (e.g. an unsafe file name)
            writer.fail(exc)
        except OSError as exc:  # disk full, workspace not writable
            writer.fail(ServiceError(f"the server cannot store the upload: {exc.strerror or exc}", status=507))

    buffer = bytearray()
    received = 0
    drained = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if writer.error is not None:
                drained += len(chunk)
                if drained > _DRAIN_EXTRA + max_file_bytes:
                    break
                continue
            buffer.extend(chunk)
            if len(buffer) >= _FLUSH_BYTES:
                data, buffer = bytes(buffer), bytearray()
                await anyio.to_thread.run_sync(feed, data)
        if writer.error is None and buffer:
            await anyio.to_thread.run_sync(feed, bytes(buffer))
        if writer.error is None:
            try:
                parser.finalize()
            except FormParserError as exc:
                logger.info("malformed multipart body: %s", exc)
                writer.fail(BadRequest(_MALFORMED))
    except ClientDisconnect:
        writer.fail(BadRequest("the client disconnected before the upload was complete"))
    finally:
        writer.close()
    if received == 0:
        raise BadRequest(f"the request body is empty; send multipart/form-data with {', '.join(file_fields)}")
    if writer.error is not None:
        raise writer.error
    if not writer.finished:
        raise BadRequest("the multipart body is incomplete (no closing boundary); send the whole file again")
    for item in writer.form.files.values():
        if item.size == 0:
            raise BadRequest(f"'{item.field}' file {item.filename!r} is empty (0 bytes); send the real file")
    return writer.form


def _suffix(name: str, suffixes: tuple[str, ...]) -> str:
    lower = name.lower()
    return next((s for s in sorted(suffixes, key=len, reverse=True) if lower.endswith(s)), "")


async def discard_body(request: Request, limit: int = _DRAIN_EXTRA) -> None:
    """Read and drop up to ``limit`` bytes of the body, so that an early error answer reaches a
    client that is still sending (it would otherwise see a broken connection)."""
    read = 0
    try:
        async for chunk in request.stream():
            read += len(chunk)
            if read > limit:
                break
    except ClientDisconnect:
        pass
