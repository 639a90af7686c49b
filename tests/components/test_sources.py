import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components.errors import SourceError
from components.sources import builtin_path, resolve

BODY = bytes(range(256)) * 4096  # 1 MiB


class Server:
    """A local HTTP server for BODY with Range support; can cut the first response short."""

    def __init__(self, cut_first: bool = False):
        self.requests: list[dict] = []
        self.cut_first = cut_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                outer.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if self.path != "/dump.xml.bz2":
                    self.send_error(404, "Not Found")
                    return
                start = (
                    int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if self.headers.get("Range")
                    else 0
                )
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(BODY) - start))
                self.end_headers()
                if outer.cut_first and len(outer.requests) == 1:
                    self.wfile.write(BODY[: len(BODY) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(BODY[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    served = Server()
    yield served
    served.close()


def test_builtin_sample_is_found_in_the_installed_package():
    path = builtin_path("enwiki-sample")
    assert path.name.startswith("enwiki-latest-pages-articles1.xml")
    assert "gensim" in path.parts
    assert path.stat().st_size > 1_000_000


def test_unknown_builtin():
    with pytest.raises(SourceError, match="unknown builtin source 'nope'; builtin: enwiki-sample"):
        builtin_path("nope")


def test_local_path_is_relative_to_root(tmp_path):
    (tmp_path / "dumps").mkdir()
    (tmp_path / "dumps" / "x.xml").write_text("<mediawiki/>")
    resolved = resolve("dumps/x.xml", tmp_path, tmp_path / "dl")
    assert resolved.path == tmp_path / "dumps" / "x.xml"
    assert resolved.name == "x.xml"


def test_missing_local_file_names_the_path(tmp_path):
    with pytest.raises(SourceError, match=f"file not found: {tmp_path}/missing.xml.bz2"):
        resolve("missing.xml.bz2", tmp_path, tmp_path / "dl")


def test_download_with_checksum(tmp_path, server):
    sha1 = hashlib.sha1(BODY).hexdigest()
    resolved = resolve(f"{server.url}/dump.xml.bz2", tmp_path, tmp_path / "dl", f"sha1:{sha1}")
    assert resolved.path.read_bytes() == BODY
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["dump.xml.bz2"]


def test_checksum_mismatch_leaves_nothing(tmp_path, server):
    with pytest.raises(SourceError, match="does not match md5:"):
        resolve(f"{server.url}/dump.xml.bz2", tmp_path, tmp_path / "dl", "md5:" + "0" * 32)
    assert list((tmp_path / "dl").iterdir()) == []


def test_interrupted_download_resumes_with_range(tmp_path):
    served = Server(cut_first=True)
    try:
        resolved = resolve(f"{served.url}/dump.xml.bz2", tmp_path, tmp_path / "dl")
    finally:
        served.close()
    assert resolved.path.read_bytes() == BODY
    assert len(served.requests) == 2
    assert served.requests[0]["range"] is None
    assert served.requests[1]["range"] == f"bytes={len(BODY) // 2}-"


def test_completed_download_is_reused_without_a_request(tmp_path, server):
    url = f"{server.url}/dump.xml.bz2"
    resolve(url, tmp_path, tmp_path / "dl")
    resolve(url, tmp_path, tmp_path / "dl")
    assert len(server.requests) == 1


def test_http_error_names_the_url(tmp_path, server):
    with pytest.raises(
        SourceError, match=r"cannot download http://127\.0\.0\.1:\d+/other: HTTP 404"
    ):
        resolve(f"{server.url}/other", tmp_path, tmp_path / "dl")
