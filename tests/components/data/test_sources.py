import datetime
import hashlib
import ipaddress
import json
import logging
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components.core.errors import SourceError, Unreachable
from components.data.sources import BUILTIN, builtin_path, latest_dump, resolve

BODY = bytes(range(256)) * 1024  # 256 KiB, every byte value
NEW = BODY[::-1]  # the same size, other bytes: the file a mirror may put in BODY's place
NAME = "dump.xml.bz2"
SHA1 = "sha1:" + hashlib.sha1(BODY).hexdigest()
SHA1_UPPER = "sha1:" + hashlib.sha1(BODY).hexdigest().upper()
MD5 = "md5:" + hashlib.md5(BODY).hexdigest()
HALF = len(BODY) // 2
MONDAY, TUESDAY = "Mon, 01 Jun 2026 10:00:00 GMT", "Tue, 02 Jun 2026 10:00:00 GMT"


class Server:
    """A local HTTP server of ``body`` at /dump.xml.bz2, answering as a dump mirror does.

    It sends ``etag`` and ``last_modified`` (None: not sent), honours Range with If-Range,
    and answers If-None-Match / If-Modified-Since with 304 while they match. Tests may change
    ``body``, ``etag`` and ``last_modified`` between requests. Options: ``cut_first`` sends
    only half of the first response body, then closes the connection, after which the server
    has ``then`` (a new body and ETag) when given; ``ranges=False`` ignores Range headers;
    ``if_range=False`` ignores If-Range (serves the range asked for); ``length="none"`` sends
    no Content-Length (the body ends when the connection closes), ``length="endless"`` neither,
    and sends the body 256 times over (``refused`` tells whether the client hung up first);
    ``status`` answers every request with that error status; ``redirect`` answers
    /old/dump.xml.bz2 with a 302 to that URL; ``tls`` (certificate, key) serves https.
    """

    def __init__(
        self,
        body: bytes = BODY,
        etag: str | None = '"v1"',
        last_modified: str | None = None,
        cut_first: bool = False,
        then: tuple[bytes, str] | None = None,
        ranges: bool = True,
        if_range: bool = True,
        length: str = "exact",
        status: int = 200,
        redirect: str | None = None,
        tls: tuple[str, str] | None = None,
    ):
        self.body, self.etag, self.last_modified = body, etag, last_modified
        self.cut_first, self.then = cut_first, then
        self.ranges_honoured, self.if_range = ranges, if_range
        self.length, self.status, self.redirect = length, status, redirect
        self.requests: list = []  # (path, headers) of each request, in order
        self.answers: list[int] = []  # the status of each answer, in order
        self.refused = False
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.base}/{NAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    @property
    def ranges(self) -> list[str | None]:
        """The Range header of each request, in order."""
        return [headers.get("Range") for _, headers in self.requests]

    def _handler(self) -> type:
        served = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                served.requests.append((self.path, self.headers))
                if served.status != 200:
                    self._answer(served.status)
                elif served.redirect and self.path == f"/old/{NAME}":
                    self._answer(302, {"Location": served.redirect})
                elif self.path != f"/{NAME}":
                    self._answer(404)
                elif self._unchanged():
                    self._answer(304)
                else:
                    self._send(served.body, self._range_start())

            def _unchanged(self) -> bool:
                if served.etag:  # RFC 9110: If-None-Match, when sent, outweighs the date
                    return self.headers.get("If-None-Match") == served.etag
                since = self.headers.get("If-Modified-Since")
                return since is not None and since == served.last_modified

            def _range_start(self) -> int:
                """The first byte asked for by ``Range: bytes=N-`` (0: the whole body)."""
                asked = self.headers.get("Range")
                validator = self.headers.get("If-Range")
                current = (served.etag, served.last_modified)
                if not asked or not served.ranges_honoured:
                    return 0
                if served.if_range and validator is not None and validator not in current:
                    return 0  # the file changed: RFC 9110 says send all of it
                return int(asked.removeprefix("bytes=").rstrip("-"))

            def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
                served.answers.append(status)
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, body: bytes, start: int) -> None:
                if start >= len(body):
                    self._answer(416, {"Content-Range": f"bytes */{len(body)}"})
                    return
                served.answers.append(206 if start else 200)
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if served.length == "exact":
                    self.send_header("Content-Length", str(len(body) - start))
                for name, value in (("ETag", served.etag), ("Last-Modified", served.last_modified)):
                    if value:
                        self.send_header(name, value)
                self.end_headers()
                cut = served.cut_first and len(served.requests) == 1
                try:
                    for _ in range(256 if served.length == "endless" else 1):
                        self.wfile.write(body[start : len(body) // 2 if cut else None])
                except (BrokenPipeError, ConnectionResetError):
                    served.refused = True  # the client hung up
                if cut and served.then:
                    served.body, served.etag = served.then

        return Handler

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


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


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        _self_sign(cert, key)
    except ImportError:  # no cryptography package: the openssl command does the same
        if shutil.which("openssl") is None:
            pytest.skip("needs the cryptography package or the openssl command")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
            + ["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
            + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
            check=True,
            capture_output=True,
        )
    return str(cert), str(key)


def _self_sign(cert, key) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cached(url, folder):
    """Where a download of ``url`` is expected: a folder named by the URL's sha256."""
    return folder / hashlib.sha256(url.encode()).hexdigest()[:16] / NAME


def _part(url, folder, data: bytes, state: dict | None = None):
    """Leave a partial download of ``url`` (and, given ``state``, its record) in ``folder``."""
    part = _cached(url, folder).with_name(f"{NAME}.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    if state is not None:
        record = {"url": url, "etag": None, "last_modified": None, "total": len(BODY)} | state
        part.with_name(f"{NAME}.part.json").write_text(json.dumps(record))
    return part


def _files(folder):
    """The files under ``folder``, relative to it."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


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
    assert resolved.path == _cached(server.url, tmp_path / "dl")
    assert resolved.name == NAME
    assert resolved.path.read_bytes() == BODY
    key = resolved.path.parent.name
    assert _files(tmp_path / "dl") == [f"{key}/{NAME}", f"{key}/{NAME}.json"]
    assert json.loads(resolved.path.with_name(f"{NAME}.json").read_text())["etag"] == '"v1"'
    assert server.ranges == [None]


def test_two_urls_with_the_same_file_name_do_not_collide(tmp_path, serve):
    first, second = serve(), serve(body=NEW)
    new_sha1 = "sha1:" + hashlib.sha1(NEW).hexdigest()
    one = resolve(first.url, tmp_path, tmp_path / "dl", SHA1).path
    other = resolve(second.url, tmp_path, tmp_path / "dl", new_sha1).path
    assert one.name == other.name == NAME
    assert one != other
    assert (one.read_bytes(), other.read_bytes()) == (BODY, NEW)
    assert resolve(first.url, tmp_path, tmp_path / "dl", SHA1).path == one
    assert (len(first.requests), len(second.requests)) == (1, 1)


def test_checksum_mismatch_leaves_no_file(tmp_path, serve):
    server = serve()
    with pytest.raises(SourceError, match="does not match md5:") as caught:
        resolve(server.url, tmp_path, tmp_path / "dl", "md5:" + "0" * 32)
    assert server.url in str(caught.value)
    assert _files(tmp_path / "dl") == []


@pytest.mark.parametrize(
    ("validators", "sent"),
    [({}, '"v1"'), ({"etag": None, "last_modified": MONDAY}, MONDAY)],
    ids=["etag", "last-modified"],
)
def test_interrupted_download_resumes_with_range_while_the_file_is_the_same(
    tmp_path, serve, validators, sent
):
    server = serve(cut_first=True, **validators)
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert server.ranges == [None, f"bytes={HALF}-"]
    assert server.requests[1][1].get("If-Range") == sent
    assert server.answers == [200, 206]
    key = resolved.path.parent.name
    assert _files(tmp_path / "dl") == [f"{key}/{NAME}", f"{key}/{NAME}.json"]


def test_a_file_changed_during_the_download_is_downloaded_again_whole(tmp_path, serve):
    # The server drops the connection halfway, then puts a new file (new ETag) in its place:
    # appending its second half to the first half of the old one would make a file that
    # never existed.
    server = serve(cut_first=True, then=(NEW, '"v2"'))
    resolved = resolve(server.url, tmp_path, tmp_path / "dl")
    assert server.ranges == [None, f"bytes={HALF}-"]
    assert server.requests[1][1].get("If-Range") == '"v1"'
    assert server.answers == [200, 200]
    assert resolved.path.read_bytes() == NEW
    assert json.loads(resolved.path.with_name(f"{NAME}.json").read_text())["etag"] == '"v2"'


def test_a_206_that_does_not_continue_the_part_starts_over(tmp_path, serve):
    # A server that ignores If-Range sends the range of its new, shorter file: its
    # Content-Range total is not the size the part was started with.
    short = NEW[: len(NEW) * 3 // 4]
    server = serve(cut_first=True, then=(short, '"v2"'), if_range=False)
    resolved = resolve(server.url, tmp_path, tmp_path / "dl")
    assert server.ranges == [None, f"bytes={HALF}-", None]
    assert server.answers == [200, 206, 200]
    assert resolved.path.read_bytes() == short


def test_interrupted_download_without_a_validator_starts_over(tmp_path, serve):
    server = serve(cut_first=True, etag=None)
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert server.ranges == [None, None]  # never appended to without If-Range


def test_a_partial_file_without_its_record_is_never_appended_to(tmp_path, serve):
    server = serve()
    _part(server.url, tmp_path / "dl", b"stale bytes")
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert server.ranges == [None]


def test_partial_file_restarts_when_the_server_ignores_range(tmp_path, serve):
    server = serve(ranges=False)
    _part(server.url, tmp_path / "dl", b"stale bytes", {"etag": '"v1"'})
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert server.ranges == ["bytes=11-"]
    assert server.answers == [200]


def test_a_complete_partial_file_is_finished_without_fetching_it_again(tmp_path, serve):
    server = serve()
    _part(server.url, tmp_path / "dl", BODY, {"etag": '"v1"'})
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert (server.ranges, server.answers) == ([f"bytes={len(BODY)}-"], [416])


def test_downloaded_file_with_a_checksum_is_reused_without_a_request(tmp_path, serve):
    server = serve()
    cached = _cached(server.url, tmp_path / "dl")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(BODY)
    assert resolve(server.url, tmp_path, tmp_path / "dl", SHA1).path == cached
    assert server.requests == []


def test_second_resolve_with_a_checksum_does_not_make_a_request(tmp_path, serve):
    server = serve()
    first = resolve(server.url, tmp_path, tmp_path / "dl", SHA1)
    assert resolve(server.url, tmp_path, tmp_path / "dl", SHA1) == first
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("validators", "header", "changed"),
    [
        ({}, "If-None-Match", {"etag": '"v2"'}),
        ({"etag": None, "last_modified": MONDAY}, "If-Modified-Since", {"last_modified": TUESDAY}),
    ],
    ids=["etag", "last-modified"],
)
def test_a_cached_file_without_checksum_is_revalidated(
    tmp_path, serve, validators, header, changed
):
    server = serve(**validators)
    path = resolve(server.url, tmp_path, tmp_path / "dl").path
    assert resolve(server.url, tmp_path, tmp_path / "dl").path == path
    assert server.requests[1][1].get(header) == (server.etag or server.last_modified)
    assert server.answers == [200, 304]  # no body fetched again
    server.body = NEW
    for field, value in changed.items():
        setattr(server, field, value)
    assert resolve(server.url, tmp_path, tmp_path / "dl").path.read_bytes() == NEW
    assert resolve(server.url, tmp_path, tmp_path / "dl").path.read_bytes() == NEW
    assert server.answers == [200, 304, 200, 304]  # the new file's validators were kept
    assert _files(tmp_path / "dl") == [
        f"{path.parent.name}/{NAME}",
        f"{path.parent.name}/{NAME}.json",
    ]


def test_a_cached_file_is_reused_with_a_warning_when_the_server_is_unreachable(
    tmp_path, serve, caplog
):
    server = serve()
    path = resolve(server.url, tmp_path, tmp_path / "dl").path
    server.close()
    with caplog.at_level(logging.WARNING, logger="components.data.sources"):
        assert resolve(server.url, tmp_path, tmp_path / "dl").path == path
    assert f"{path} could not be checked" in caplog.text
    assert path.read_bytes() == BODY


@pytest.mark.parametrize("length", ["exact", "endless"], ids=["announced", "sent-without-end"])
def test_a_download_over_the_size_limit_is_refused_and_removed(tmp_path, serve, length):
    # "endless": the server announces no length and sends on and on: only the bytes
    # received can tell, and the client must hang up rather than take them all.
    server = serve(length=length)
    with pytest.raises(SourceError, match="download limit of 100,000 bytes") as caught:
        resolve(server.url, tmp_path, tmp_path / "dl", max_bytes=100_000)
    assert type(caught.value) is SourceError  # not Unreachable: a retry would not help
    assert server.url in str(caught.value)
    assert "ingest.max_download_gb" in str(caught.value)
    assert len(server.requests) == 1
    assert _files(tmp_path / "dl") == []
    server.close()  # waits for the server to finish writing, or to fail to
    assert server.refused or length == "exact"


def test_a_download_without_a_length_is_kept_up_to_the_limit(tmp_path, serve):
    server = serve(length="none")
    resolved = resolve(server.url, tmp_path, tmp_path / "dl", max_bytes=len(BODY))
    assert resolved.path.read_bytes() == BODY


def test_http_redirects_are_followed(tmp_path, serve):
    target = serve()
    hop = serve(redirect=target.url)
    resolved = resolve(f"{hop.base}/old/{NAME}", tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert (hop.answers, target.answers) == ([302], [200])


def test_https_redirects_within_https_are_followed(tmp_path, serve, certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])  # the default context trusts it
    server = serve(tls=certificate)
    server.redirect = server.url
    resolved = resolve(f"{server.base}/old/{NAME}", tmp_path, tmp_path / "dl", SHA1)
    assert resolved.path.read_bytes() == BODY
    assert server.answers == [302, 200]


def test_a_redirect_from_https_to_http_is_refused(tmp_path, serve, certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    plain = serve()
    secure = serve(tls=certificate, redirect=plain.url)
    url = f"{secure.base}/old/{NAME}"
    with pytest.raises(SourceError, match="away from https") as caught:
        resolve(url, tmp_path, tmp_path / "dl")
    assert type(caught.value) is SourceError  # permanent: not retried
    assert url in str(caught.value)
    assert plain.url in str(caught.value)
    assert (secure.answers, plain.requests) == ([302], [])


def test_downloads_under_a_file_is_one_error_before_any_request(tmp_path, serve):
    server = serve()
    (tmp_path / "file").write_text("")
    with pytest.raises(SourceError, match="cannot write .*: Not a directory") as caught:
        resolve(server.url, tmp_path, tmp_path / "file" / "dl")
    assert str(tmp_path / "file" / "dl") in str(caught.value)
    assert server.requests == []


def test_a_write_error_is_one_error_naming_the_file_and_never_retried(tmp_path, serve):
    server = serve()
    part = _part(server.url, tmp_path / "dl", b"")
    part.unlink()
    part.mkdir()  # a folder where the partial file must be written
    with pytest.raises(SourceError, match="Is a directory") as caught:
        resolve(server.url, tmp_path, tmp_path / "dl")
    assert type(caught.value) is SourceError
    assert f"cannot write {part}:" in str(caught.value)
    assert len(server.requests) == 1


def test_a_full_disk_says_how_much_space_is_needed_and_is_never_retried(tmp_path, serve):
    server = serve()
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        with pytest.raises(SourceError, match="No space left on device") as caught:
            resolve(server.url, tmp_path, disk / "dl")
        part = _cached(server.url, disk / "dl").with_name(f"{NAME}.part")
        written = part.stat().st_size
        free = shutil.disk_usage(disk).free
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert type(caught.value) is SourceError
    assert f"cannot write {part}:" in str(caught.value)
    assert f"{len(BODY) - written:,} more bytes needed, {free:,} bytes free" in str(caught.value)
    assert len(server.requests) == 1


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
    assert len(server.requests) == 3
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
