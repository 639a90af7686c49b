"""Downloads of dumps that cannot be fooled: cached by URL, resumed only when unchanged.

A URL is downloaded once into ``<downloads>/<short sha256 of the URL>/<file name>``, so two
URLs never share a file, with the server's validators (ETag, Last-Modified) in a JSON file
beside it:

- an interrupted download resumes (HTTP ``Range`` with ``If-Range``) only while the server's
  file is still the one partly downloaded; otherwise it starts over;
- a downloaded file is reused when it matches ``ingest.checksum`` (sha1/md5) or, without
  one, when the server answers that it has not changed;
- a file larger than the size limit is refused, even from a server that announced less;
- a redirect from https to http is refused;
- a local disk error (a full disk, a read-only folder) ends it at once: only network trouble
  is retried.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from components.core.artifacts import file_digest, write_json
from components.core.disk import free_bytes, is_disk_full
from components.core.errors import SourceError, Unreachable
from components.core.progress import progress

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_ATTEMPTS = 3
# What a failing connection raises (TimeoutError, ConnectionError, ssl.SSLError and the other
# socket errors are OSErrors). A local file's OSError never gets here: _disk turns it into a
# SourceError first, as no retry frees a disk.
NETWORK = (urllib.error.URLError, http.client.HTTPException, OSError)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+)")

State = dict[str, Any]  # what a sidecar JSON records: url, etag, last_modified, total


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to anything else (the dump would travel unsecured)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlparse(req.full_url).scheme == "https" and urlparse(newurl).scheme != "https":
            fp.close()
            raise SourceError(
                f"{req.full_url} redirects to {newurl}, away from https: refused; "
                "use a URL whose server stays on https"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _TrustAsConfigured(urllib.request.HTTPSHandler):
    """Verifies each connection with a default TLS context made for it.

    As Python 3.11 does; from 3.12 a handler keeps the context made when it is built, which
    would ignore a trust store set later (SSL_CERT_FILE) in a long-lived worker.
    """

    def https_open(self, req):
        return self.do_open(http.client.HTTPSConnection, req, context=ssl.create_default_context())


# Built once; every request of this module goes through it.
OPENER = urllib.request.build_opener(_HttpsOnlyRedirects, _TrustAsConfigured)


class _StartOver(Exception):
    """The partial download is not the start of the server's file: it must be discarded."""


def download(
    url: str, folder: Path, checksum: str | None, timeout: float, max_bytes: int | None = None
) -> Path:
    """Download ``url`` into its own folder under ``folder``; reuse it while it is current.

    The file is written as ``<name>.part`` and renamed only when complete and verified, so an
    interrupted download is resumed by the next call and never read as a dump.

    Raises:
        SourceError: a client error, a checksum mismatch, a file over ``max_bytes``, a
            redirect away from https, or a local disk error; none is worth a retry.
        Unreachable: the server did not answer, or kept failing, after the retries.
    """
    final = _cache_path(url, folder)
    if checksum and final.is_file() and _matches(final, checksum):
        log.info("using downloaded %s (it matches %s)", final, checksum)
        return final
    # Without a checksum only the server can tell whether the file is current: ask it.
    cached = (_load_state(final, url) or {}) if final.is_file() and not checksum else None
    with _disk(final.parent):
        final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    try:
        fresh = _fetch_with_retries(url, part, timeout, max_bytes, cached)
    except Unreachable as error:
        if cached is None or part.exists():
            raise
        log.warning("%s could not be checked (%s); using it as downloaded earlier", final, error)
        return final
    if not fresh:
        log.info("using downloaded %s (unchanged on the server)", final)
        return final
    if checksum and not _matches(part, checksum):
        _discard(part)
        raise SourceError(f"{url}: downloaded file does not match {checksum}; removed it, retry")
    _complete(part, final)
    return final


def _cache_path(url: str, folder: Path) -> Path:
    """``<folder>/<short sha256 of url>/<file name>``: two URLs never share a file."""
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return folder / key / (Path(urlparse(url).path).name or "dump.xml.bz2")


def _sidecar(path: Path) -> Path:
    """The JSON file beside ``path`` that records the validators of its download."""
    return path.with_name(path.name + ".json")


def _matches(path: Path, checksum: str) -> bool:
    algorithm, expected = checksum.split(":", 1)
    return file_digest(path, algorithm).lower() == expected.lower()


def _fetch_with_retries(
    url: str, part: Path, timeout: float, max_bytes: int | None, cached: State | None
) -> bool:
    """:func:`_fetch_into`, again after network trouble or after discarding a stale part."""
    attempt = 1
    while True:
        try:
            return _fetch_into(url, part, timeout, max_bytes, cached)
        except _StartOver as reason:  # not a failure: the next request asks for the whole file
            log.warning("%s: %s; downloading it again from the start", url, reason)
            _discard(part)
        except NETWORK as error:
            if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                raise SourceError(
                    f"cannot download {url}: HTTP {error.code} {error.reason}"
                ) from None
            # A revalidation that got no answer is not insisted on: the cached file will do.
            if cached is not None and not part.exists():
                raise Unreachable(f"cannot reach {url}: {error}") from None
            if attempt == _ATTEMPTS:
                raise Unreachable(
                    f"cannot download {url} after {attempt} attempts: {error}"
                ) from None
            attempt += 1
            log.warning("download interrupted (%s); resuming (attempt %d)", error, attempt)


def _fetch_into(
    url: str, part: Path, timeout: float, max_bytes: int | None, cached: State | None
) -> bool:
    """One request: resume ``part``, revalidate the cached file, or fetch the whole file.

    ``cached`` holds the validators of the file downloaded earlier (None: nothing to
    revalidate). Returns False when the server answers that the cached file is current,
    True when ``part`` holds the whole file.

    Raises:
        _StartOver: ``part`` is not the start of the server's file.
    """
    state = _load_state(part, url)
    headers, offset = _request_headers(part, state, cached)
    try:
        response = OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 304 and cached is not None:
            _discard(part)  # a part without validators is of no use: the cached file is current
            return False
        if error.code == 416 and offset:
            if state and offset == state["total"]:
                return True  # nothing left to fetch: the part is complete
            raise _StartOver(f"the server has no bytes from {offset:,} on") from None
        raise
    with response:
        total = _announced_size(response, url, offset, state)
        _check_limit(url, part, total, max_bytes)
        if response.status == 200:
            if offset:  # If-Range did not match
                log.info("%s changed on the server; downloading it again from the start", url)
            _start_part(part, url, response, total)
            offset = 0
        _receive(response, url, part, offset, total, max_bytes)
    return True


def _request_headers(
    part: Path, state: State | None, cached: State | None
) -> tuple[dict[str, str], int]:
    """The next request's headers, and the byte it resumes from (0: from the start).

    A part is resumed only with the validator and size recorded when it was started: given
    ``If-Range``, the server sends the rest only if its file is still that one, else all of
    it. A part without them is never appended to.
    """
    offset = _size(part)
    validator = _if_range(state) if state else None
    if offset and validator and state and isinstance(state.get("total"), int):
        return {"Range": f"bytes={offset}-", "If-Range": validator}, offset
    headers = {}
    if cached and cached.get("etag"):
        headers["If-None-Match"] = cached["etag"]
    if cached and cached.get("last_modified"):
        headers["If-Modified-Since"] = cached["last_modified"]
    return headers, 0


def _if_range(state: State) -> str | None:
    """The validator If-Range may carry: a strong ETag, else Last-Modified (RFC 9110 13.1.5)."""
    etag = state.get("etag")
    return etag if etag and not etag.startswith("W/") else state.get("last_modified")


def _announced_size(
    response: http.client.HTTPResponse, url: str, offset: int, state: State | None
) -> int | None:
    """The whole file's size as the response announces it (None: not announced).

    Raises:
        _StartOver: a 206 that does not continue the part (other bytes, or another file size).
        SourceError: an answer that is neither 200 nor the 206 asked for.
    """
    if response.status == 206 and offset and state:
        content_range = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.fullmatch(content_range)
        if not match or int(match[1]) != offset or int(match[2]) != state["total"]:
            raise _StartOver(
                f"its Content-Range {content_range!r} does not continue the {offset:,} bytes "
                f"of a {state['total']:,}-byte file downloaded"
            )
        return state["total"]
    if response.status != 200:
        raise SourceError(
            f"cannot download {url}: unexpected HTTP {response.status} {response.reason}"
        )
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _check_limit(url: str, part: Path, total: int | None, max_bytes: int | None) -> None:
    """Refuse a file announced larger than ``max_bytes`` before a byte of it is written."""
    if total is not None and max_bytes is not None and total > max_bytes:
        _discard(part)
        raise SourceError(
            f"{url} is {total:,} bytes, over the download limit of {max_bytes:,} bytes: "
            "raise ingest.max_download_gb if this is the dump you want"
        )


def _start_part(
    part: Path, url: str, response: http.client.HTTPResponse, total: int | None
) -> None:
    """Empty ``part`` for a new file, then record the file's validators and size beside it.

    Emptied first: a crash between the two never leaves old bytes under new validators.
    """
    state = {
        "url": url,
        "etag": response.headers.get("ETag"),
        "last_modified": response.headers.get("Last-Modified"),
        "total": total,
    }
    with _disk(part, total):
        part.write_bytes(b"")
        write_json(_sidecar(part), state)  # atomic: a crash leaves the old record or the new


def _receive(
    response: http.client.HTTPResponse,
    url: str,
    part: Path,
    offset: int,
    total: int | None,
    max_bytes: int | None,
) -> None:
    """Append the body to ``part`` (``offset`` bytes long): up to ``total``, the announced size.

    Raises:
        SourceError: more bytes than the limit or than announced (part removed), or a disk
            error.
        http.client.IncompleteRead: the body ended before its announced end: resumable.
    """
    cap = min((n for n in (total, max_bytes) if n is not None), default=None)
    size = offset
    with (
        _appending(part, total) as out,
        progress(total=total, initial=offset, unit="B", desc=f"download {part.stem}") as bar,
    ):
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if cap is not None and size > cap:
                break  # a server that says less than it sends
            with _disk(part, total):
                out.write(chunk)
            bar.update(len(chunk))
    if cap is not None and size > cap:
        _discard(part)
        raise _overrun(url, total, max_bytes)
    if total is not None and size < total:
        raise http.client.IncompleteRead(b"", total - size)


def _overrun(url: str, total: int | None, max_bytes: int | None) -> SourceError:
    """The error for a body longer than the limit or than its announced size."""
    announced = f"{total:,} bytes" if total is not None else "no size"
    if max_bytes is not None and (total is None or total >= max_bytes):
        return SourceError(
            f"{url} sent more than the download limit of {max_bytes:,} bytes (it announced "
            f"{announced}); removed the partial file: raise ingest.max_download_gb if this "
            "is the dump you want"
        )
    return SourceError(
        f"{url} sent more than the {announced} it announced; removed the partial file: "
        "the server is broken, try another mirror"
    )


def _complete(part: Path, final: Path) -> None:
    """Put the finished download in place, then its record (a crash between leaves none)."""
    with _disk(final):
        _sidecar(final).unlink(missing_ok=True)
        part.replace(final)
        _sidecar(part).replace(_sidecar(final))


def _discard(part: Path) -> None:
    """Remove a partial download and its record."""
    with _disk(part):
        part.unlink(missing_ok=True)
        _sidecar(part).unlink(missing_ok=True)


def _load_state(path: Path, url: str) -> State | None:
    """The validators recorded beside ``path`` for ``url`` (None: none, or unreadable)."""
    try:
        state = json.loads(_sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("url") == url else None


def _size(path: Path) -> int:
    """Bytes in ``path`` (0 when it is missing)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextmanager
def _appending(part: Path, total: int | None) -> Iterator[BinaryIO]:
    """``part`` open for appending; failing to open or close it is a disk error."""
    with _disk(part, total):
        out = part.open("ab")
    try:
        yield out
    finally:
        with _disk(part, total):
            out.close()  # flushes: a full disk may only show here


@contextmanager
def _disk(path: Path, total: int | None = None) -> Iterator[None]:
    """Turn an OSError of a local file into one SourceError: no retry frees a disk.

    ``total``, the size announced for ``path``, tells a full disk how much more it needed.
    """
    try:
        yield
    except OSError as error:
        raise _disk_error(path, error, total) from None


def _disk_error(path: Path, error: OSError, total: int | None) -> SourceError:
    """The one-line report of a local file that cannot be written."""
    reason = error.strerror or str(error)
    if not is_disk_full(error):
        return SourceError(
            f"cannot write {path}: {reason}; paths.downloads must be a writable folder"
        )
    needed = f"{total - _size(path):,} more bytes needed, " if total is not None else ""
    free = f"{free_bytes(path.parent):,} bytes free"
    return SourceError(
        f"cannot write {path}: {reason} ({needed}{free}): free some space, or point "
        "paths.downloads at a bigger disk"
    )
