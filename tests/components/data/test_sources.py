import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components.core.errors import SourceError, Unreachable
from components.data.sources import BUILTIN, builtin_path, latest_dump, resolve

BODY = bytes(range(256)) * 1024  # 256 KiB, every byte value
NAME = "dump.xml.bz2"
SHA1 = "sha1:" + hashlib.sha1(BODY).hexdigest()
SHA1_UPPER = "sha1:" + hashlib.sha1(BODY).hexdigest().upper()
MD5 = "md5:" + hashlib.md5(BODY).hexdigest()


class Server:
    """A local HTTP server of BODY at /dump.xml.bz2 that honours Range requests.

    ``cut_first`` sends only half of the first response body, then closes the connection;
    ``ranges=False`` ignores Range headers (answers 200 with the whole body); ``status``
    answers every request with that error status.
    """

    def __init__(self, cut_first: bool = False, ranges: bool = True, status: int = 200):
        self.ranges: list[str | None] = []  # the Range header of each request, in order
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(cut_first, ranges, status))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{NAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def _handler(self, cut_first: bool, ranges: bool, status: int) -> type:
        served = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                served.ranges.append(self.headers.get("Range"))
                if status != 200 or self.path != f"/{NAME}":
                    self.send_error(status if status != 200 else 404)
                    return
                start = _range_start(self.headers.get("Range")) if ranges else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(BODY) - start))
                self.end_headers()
                cut = cut_first and len(served.ranges) == 1
                self.wfile.write(BODY[start : len(BODY) // 2 if cut else None])

        return Handler

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _range_start(header: str | None) -> int:
    """The first byte asked for by ``Range: bytes=N-``, 0 without a Range header."""
    return int(header.removeprefix("bytes=").rstrip("-")) if header else 0


@pytest.fixture
def serve():
    """Start a Server with the given options; every started server is closed afterwards."""
    servers: list[Server] = []

    def start(**options) -> Server:
        servers.append(Server(**options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_builtin_sample_is_found_in_the_installed_package():
    path = builtin_path("enwiki-sample")
    assert path.name == BUILTIN["enwiki-sample"][1].rpartition("/")[2]
    assert "gensim" in path.parts
    assert path.read_bytes()[:3] == b"BZh"


def test_builtin_source_resolves_by_name(tmp_path):
    resolved = resolve("builtin:enwiki-sample", tmp_path, tmp_path / "dl")
    assert resolved.path == builtin_path("enwiki-sample")
    assert resolved.name.startswith("enwiki-latest-pages-articles1.xml")
    assert not (tmp_path / "dl").exists()


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(SourceError, match=r"unknown builtin source 'nope'; builtin: enwiki-sample"):
        builtin_path("nope")


def test_local_path_is_relative_to_root(tmp_path):
    (tmp_path / "dumps").mkdir()
    (tmp_path / "dumps" / "x.xml").write_text("<mediawiki/>")
    resolved = resolve("dumps/x.xml", tmp_path, tmp_path / "dl")
    assert (resolved.path, resolved.name) == (tmp_path / "dumps" / "x.xml", "x.xml")


def test_absolute_path_ignores_root(tmp_path):
    (tmp_path / "x.xml").write_text("<mediawiki/>")
    assert resolve(str(tmp_path / "x.xml"), tmp_path / "elsewhere", tmp_path).path == (
        tmp_path / "x.xml"
    )


def test_home_relative_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "x.xml").write_text("<mediawiki/>")
    assert resolve("~/x.xml", tmp_path / "root", tmp_path).path == tmp_path / "home" / "x.xml"


def test_missing_local_file_names_the_path(tmp_path):
    missing = tmp_path / "missing.xml.bz2"
    with pytest.raises(SourceError, match="file not found") as caught:
        resolve("missing.xml.bz2", tmp_path, tmp_path / "dl")
    assert str(missing) in str(caught.value)


def test_local_file_checksum_mismatch(tmp_path):
    (tmp_path / "x.xml").write_bytes(b"other")
    with pytest.raises(SourceError, match="expected"):
        resolve("x.xml", tmp_path, tmp_path / "dl", SHA1)


@pytest.mark.parametrize(
    "checksum", [SHA1, MD5, SHA1_UPPER, None], ids=["sha1", "md5", "upper-case", "none"]
)
def test_download(tmp_path, serve, checksum):
    server = serve()
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", checksum)
    assert resolved.path == tmp_path / "dl" / NAME
    assert resolved.path.read_bytes() == BODY
    assert _files(tmp_path / "dl") == [NAME]
    assert server.ranges == [None]


def test_checksum_mismatch_leaves_no_file(tmp_path, serve):
    server = serve()
    with pytest.raises(SourceError, match="does not match md5:") as caught:
        resolve(server.url, tmp_path, tmp_path / "dl", "md5:" + "0" * 32)
    assert server.url in str(caught.value)
    assert _files(tmp_path / "dl") == []


def test_interrupted_download_resumes_with_range(tmp_path, serve):
    server = serve(cut_first=True)
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert server.ranges == [None, f"bytes={len(BODY) // 2}-"]
    assert _files(tmp_path / "dl") == [NAME]


def test_partial_file_restarts_when_the_server_ignores_range(tmp_path, serve):
    server = serve(ranges=False)
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / f"{NAME}.part").write_bytes(b"stale bytes")
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert server.ranges == ["bytes=11-"]


@pytest.mark.parametrize("checksum", [SHA1, None], ids=["sha1", "none"])
def test_downloaded_file_is_reused_without_a_request(tmp_path, serve, checksum):
    server = serve()
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / NAME).write_bytes(BODY)
    assert resolve(server.url, tmp_path, tmp_path / "dl", checksum).path == tmp_path / "dl" / NAME
    assert server.ranges == []


def test_second_resolve_does_not_download_again(tmp_path, serve):
    server = serve()
    first = resolve(server.url, tmp_path, tmp_path / "dl")
    assert resolve(server.url, tmp_path, tmp_path / "dl") == first
    assert len(server.ranges) == 1


def test_downloaded_file_with_wrong_checksum_is_fetched_again(tmp_path, serve):
    server = serve()
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / NAME).write_bytes(b"damaged")
    assert resolve(server.url, tmp_path, tmp_path / "dl", SHA1).path.read_bytes() == BODY
    assert server.ranges == [None]


def test_http_404_names_the_url(tmp_path, serve):
    server = serve()
    url = server.url.replace(NAME, "other.xml.bz2")
    with pytest.raises(SourceError, match="HTTP 404") as caught:
        resolve(url, tmp_path, tmp_path / "dl")
    assert f"cannot download {url}:" in str(caught.value)
    assert server.ranges == [None]  # a client error is not retried
    assert _files(tmp_path / "dl") == []


def test_server_error_is_retried_then_reported(tmp_path, serve):
    server = serve(status=503)
    with pytest.raises(Unreachable, match="after 3 attempts") as caught:
        resolve(server.url, tmp_path, tmp_path / "dl")
    assert server.url in str(caught.value)
    assert len(server.ranges) == 3
    assert _files(tmp_path / "dl") == []


@pytest.fixture
def mirror(dump_mirror):
    return dump_mirror(BODY)


def test_latest_names_the_newest_dump_and_its_sha1(mirror):
    url, _ = mirror
    dump, checksum = latest_dump(url, "enwiki")
    assert dump == f"{url}/enwiki/latest/enwiki-latest-pages-articles.xml.bz2"
    assert checksum == SHA1


def test_latest_downloads_and_verifies_the_newest_dump(tmp_path, mirror):
    url, _ = mirror
    resolved = resolve("latest", tmp_path, tmp_path / "dl", latest=(url, "enwiki"))
    assert resolved.path.read_bytes() == BODY
    assert resolved.name == "enwiki-latest-pages-articles.xml.bz2"


def test_latest_for_an_unlisted_wiki_is_a_clear_error(tmp_path, mirror):
    url, latest = mirror
    (latest.parent.parent / "dewiki" / "latest").mkdir(parents=True)
    (latest.parent.parent / "dewiki" / "latest" / "dewiki-latest-sha1sums.txt").write_text("")
    with pytest.raises(SourceError, match="does not list dewiki-latest-pages-articles"):
        latest_dump(url, "dewiki")
    with pytest.raises(Unreachable, match="cannot read the latest dump listing"):
        latest_dump(url, "frwiki")
