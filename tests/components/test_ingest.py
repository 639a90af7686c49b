import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from components.errors import SourceError
from components.ingest import run
from components.textstats import markup_leftovers
from tests.conftest import make_params
from tests.dumps import WikiPage, article, sample_pages, write_dump


def _ingest(workspace, dump, **ingest):
    return run(make_params(ingest={"source": str(dump), "workers": 1, **ingest}), workspace)


def _rows(workspace):
    return pq.read_table(sorted(workspace.ingest.glob("part-*.parquet"))[0]).to_pylist()


def test_outcomes_rows_and_meta(workspace, tiny_dump):
    result = _ingest(workspace, tiny_dump)
    assert result.outcomes == {"kept": 3, "redirect": 1, "not_article": 1, "disambiguation": 1}
    assert result.documents == 3
    rows = _rows(workspace)
    assert [r["title"] for r in rows] == ["Alpha", "Beta", "Epsilon"]
    assert set(rows[0]) == {"id", "title", "revision_id", "timestamp", "text"}
    assert rows[0]["text"].startswith("Alpha is a town in the northern region")
    assert "1 km" in rows[0]["text"]  # {{convert}} keeps its prose
    assert all(markup_leftovers(r["text"]) == 0 for r in rows)
    meta = json.loads((workspace.ingest / "meta.json").read_text())
    assert meta["stage"] == "ingest"
    assert meta["outcomes"]["kept"] == 3
    assert meta["inputs"]["dump_sha1"] == result.dump_sha1
    assert meta["namespaces"]["14"] == "Category"


def test_disambiguation_and_headings_follow_params(workspace, tiny_dump):
    result = _ingest(workspace, tiny_dump, keep_disambiguation=True, keep_headings=False)
    assert result.outcomes["kept"] == 4
    assert all("History" not in r["text"].split("\n") for r in _rows(workspace))


def test_parallel_output_equals_serial_output(workspace, tmp_path):
    dump = write_dump(tmp_path / "many.xml.bz2", [article(i, f"Town {i}") for i in range(1, 200)])
    _ingest(workspace, dump, workers=1)
    serial = _rows(workspace)
    _ingest(workspace, dump, workers=2)
    assert _rows(workspace) == serial
    assert len(serial) == 199


def test_malformed_page_is_counted_and_the_stage_goes_on(workspace, tmp_path):
    dump = write_dump(tmp_path / "d.xml.bz2", [*sample_pages(), WikiPage(9, "Broken", None)])
    result = _ingest(workspace, dump)
    assert result.outcomes["missing_text"] == 1
    assert result.documents == 3


def test_localised_namespaces_are_removed(workspace, tmp_path):
    text = (
        "Die Stadt liegt am Fluss. [[Datei:Bild.jpg|mini|Ein Bild]] Sie ist alt.\n[[Kategorie:Ort]]"
    )
    names = {"file": "Datei", "category": "Kategorie"}
    dump = write_dump(tmp_path / "de.xml.bz2", [WikiPage(1, "Stadt", text)], lang="de", names=names)
    _ingest(workspace, dump)
    assert _rows(workspace)[0]["text"] == "Die Stadt liegt am Fluss. Sie ist alt."


def test_dump_without_articles_fails(workspace, tmp_path):
    dump = write_dump(tmp_path / "d.xml.bz2", [WikiPage(1, "R", "#REDIRECT [[X]]", redirect="X")])
    with pytest.raises(SourceError, match="no articles in this dump"):
        _ingest(workspace, dump)
    assert not workspace.ingest.exists()


def _damage(path, kind):
    raw = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "corrupt":
        path.write_bytes(raw[:50] + b"\xff" * 100 + raw[150:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "missing":
        path.unlink()


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "empty", "missing"])
def test_bad_input_keeps_the_previous_output(workspace, tmp_path, tiny_dump, kind):
    _ingest(workspace, tiny_dump)
    before = {p.name: p.read_bytes() for p in workspace.ingest.iterdir()}
    bad = write_dump(tmp_path / "bad.xml.bz2", [article(i, f"T{i}") for i in range(1, 60)])
    _damage(bad, kind)
    with pytest.raises(SourceError) as caught:
        _ingest(workspace, bad)
    assert str(bad) in str(caught.value)
    assert {p.name: p.read_bytes() for p in workspace.ingest.iterdir()} == before
    assert sorted(p.name for p in workspace.ingest.parent.iterdir()) == ["ingest"]


def _cli(params_file):
    return subprocess.run(
        [sys.executable, "-m", "components", "ingest", "--params", str(params_file)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_reports_every_bad_param_at_once_with_exit_2(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "ingest:\n  workers: -1\n  shard_docs: many\n  surprise: 1\n"
        "clean:\n  min_words: 100\n  max_words: 10\n"
    )
    done = _cli(params)
    assert done.returncode == 2
    for key in ("ingest.workers", "ingest.shard_docs", "ingest.surprise", "clean.min_words"):
        assert key in done.stderr
    assert not (tmp_path / "data").exists()


def test_cli_missing_dump_is_one_line_exit_1(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  source: nowhere.xml.bz2\n")
    done = _cli(params)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: ingest: ingest.source: file not found: {tmp_path}/nowhere.xml.bz2"
    ]
