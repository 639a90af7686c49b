import bz2
import hashlib
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from components.core.artifacts import dir_digest
from components.core.errors import SourceError
from components.core.parallel import worker_count
from components.core.resume import work_folder
from components.data import ingest, render
from components.data.validate import MARKUP_TOKENS
from components.data.wikitext import to_text
from components.data.wikixml import DumpReader
from tests.conftest import make_params
from tests.dumps import WikiPage, article, dump_xml, needs_lbzip2, sample_pages, write_dump
from tests.stages import kill_and_rerun, stage_params

COLUMNS = ["id", "title", "revision_id", "timestamp", "text"]
SAMPLE_OUTCOMES = {"kept": 3, "redirect": 1, "not_article": 1, "disambiguation": 1}
NAMESPACES = {"-2": "Media", "0": "", "6": "File", "10": "Template", "14": "Category"}


def _ingest(workspace, dump, **options):
    return ingest.run(make_params(ingest={"source": str(dump), "workers": 1, **options}), workspace)


def _shards(workspace):
    return sorted(workspace.ingest.glob("part-*.parquet"))


def _rows(workspace):
    return [row for path in _shards(workspace) for row in pq.read_table(path).to_pylist()]


def _by_title(workspace):
    return {row["title"]: row for row in _rows(workspace)}


def _snapshot(folder):
    """Every file under ``folder`` with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_outcomes_of_the_tiny_dump(workspace, tiny_dump):
    result = _ingest(workspace, tiny_dump)
    assert result.outcomes == SAMPLE_OUTCOMES
    assert (result.pages, result.documents, result.shards) == (6, 3, 1)
    assert result.dump == tiny_dump.name
    assert result.dump_sha1 == hashlib.sha1(tiny_dump.read_bytes()).hexdigest()
    assert result.dump_bytes == tiny_dump.stat().st_size
    assert result.text_chars == sum(len(row["text"]) for row in _rows(workspace))


def test_parquet_rows_hold_the_rendered_text(workspace, tiny_dump):
    _ingest(workspace, tiny_dump)
    table = pq.read_table(_shards(workspace)[0])
    assert table.column_names == COLUMNS
    rows = table.to_pylist()
    assert [(r["id"], r["title"]) for r in rows] == [(1, "Alpha"), (2, "Beta"), (6, "Epsilon")]
    assert rows[0]["revision_id"] == 1000
    assert rows[0]["timestamp"] == "2024-01-01T00:00:00Z"
    assert rows[0]["text"] == to_text(sample_pages()[0].text)


def test_rendered_text_has_no_markup(workspace, tiny_dump):
    _ingest(workspace, tiny_dump)
    text = _by_title(workspace)["Alpha"]["text"]
    assert text.startswith("Alpha is a town in the northern region of the country.")
    assert "lies 1 km from the capital" in text  # {{convert}} keeps its prose
    for debris in (*MARKUP_TOKENS, "Census", "Category", "The market", "'''"):
        assert debris not in text


def test_meta_json_records_the_run(workspace, tiny_dump):
    _ingest(workspace, tiny_dump)
    meta = json.loads((workspace.ingest / "meta.json").read_text())
    assert meta["stage"] == "ingest"
    assert meta["format_version"] == 1
    assert meta["dump"] == tiny_dump.name
    assert meta["inputs"] == {"dump_sha1": hashlib.sha1(tiny_dump.read_bytes()).hexdigest()}
    assert meta["outcomes"] == SAMPLE_OUTCOMES
    assert meta["namespaces"] == NAMESPACES
    assert meta["params"]["source"] == str(tiny_dump)
    assert meta["params"]["workers"] == 1


def test_output_folder_holds_only_shards_and_meta(workspace, tiny_dump):
    _ingest(workspace, tiny_dump)
    assert sorted(p.name for p in workspace.ingest.iterdir()) == ["meta.json", "part-00000.parquet"]
    assert sorted(p.name for p in workspace.ingest.parent.iterdir()) == ["ingest"]


def test_keep_disambiguation_keeps_it(workspace, tiny_dump):
    result = _ingest(workspace, tiny_dump, keep_disambiguation=True)
    assert result.outcomes["kept"] == 4
    assert "disambiguation" not in result.outcomes
    assert _by_title(workspace)["Delta (disambiguation)"]["text"].startswith("Delta may refer to")


@pytest.mark.parametrize("keep_headings", [True, False])
def test_keep_headings(workspace, tiny_dump, keep_headings):
    _ingest(workspace, tiny_dump, keep_headings=keep_headings)
    paragraphs = _by_title(workspace)["Alpha"]["text"].split("\n\n")
    assert ("History" in paragraphs) is keep_headings
    assert ("Geography" in paragraphs) is keep_headings
    assert any(p.startswith("The first settlement") for p in paragraphs)


def test_localised_namespaces_of_the_dump_are_hidden(workspace, tmp_path):
    text = (
        "Die Stadt liegt am Fluss. [[Datei:Bild.jpg|mini|Ein Bild]] Sie ist alt.\n[[Kategorie:Ort]]"
    )
    names = {"file": "Datei", "category": "Kategorie"}
    dump = write_dump(tmp_path / "de.xml.bz2", [WikiPage(1, "Stadt", text)], lang="de", names=names)
    _ingest(workspace, dump)
    assert _rows(workspace)[0]["text"] == "Die Stadt liegt am Fluss. Sie ist alt."


def test_two_workers_write_the_same_rows_as_one(workspace, tmp_path):
    pages = [article(i, f"Town {i}") for i in range(1, 151)]  # three batches of pages
    pages.insert(70, WikiPage(999, "Redirect", "#REDIRECT [[Town 1]]", redirect="Town 1"))
    dump = write_dump(tmp_path / "many.xml.bz2", pages)
    serial = _ingest(workspace, dump, workers=1, shard_docs=40)
    serial_rows = _rows(workspace)
    parallel = _ingest(workspace, dump, workers=2, shard_docs=40)
    assert _rows(workspace) == serial_rows
    assert [r["id"] for r in serial_rows] == list(range(1, 151))
    assert (
        (parallel.outcomes, parallel.shards)
        == (serial.outcomes, serial.shards)
        == (
            {"kept": 150, "redirect": 1},
            4,
        )
    )


@pytest.mark.parametrize(
    ("page", "outcome"),
    [
        (WikiPage(9, "Broken", None), "missing_text"),
        (WikiPage(9, "Stub", "{{stub}}\n[[Category:Stubs]]"), "empty_text"),
        (WikiPage(9, "Style.css", "body {}", model="css"), "not_wikitext"),
    ],
    ids=["missing-text", "empty-text", "not-wikitext"],
)
def test_odd_page_is_counted_and_the_stage_goes_on(workspace, tmp_path, page, outcome):
    dump = write_dump(tmp_path / "d.xml.bz2", [*sample_pages()[:3], page, *sample_pages()[3:]])
    result = _ingest(workspace, dump)
    assert result.outcomes == {**SAMPLE_OUTCOMES, outcome: 1}
    assert [r["title"] for r in _rows(workspace)] == ["Alpha", "Beta", "Epsilon"]


def test_page_without_id_is_counted(workspace, tmp_path):
    xml = dump_xml([*sample_pages(), WikiPage(9, "No id", "Text.")]).replace("<id>9</id>", "")
    dump = tmp_path / "noid.xml"
    dump.write_text(xml)
    assert _ingest(workspace, dump).outcomes == {**SAMPLE_OUTCOMES, "missing_id": 1}


def test_page_that_fails_to_render_is_counted(workspace, tiny_dump, monkeypatch):
    def flaky(wikitext, options):
        if wikitext.startswith("'''Beta'''"):
            raise RecursionError("too deep")
        return to_text(wikitext, options)

    monkeypatch.setattr(render, "to_text", flaky)
    result = _ingest(workspace, tiny_dump)
    assert result.outcomes == {**SAMPLE_OUTCOMES, "kept": 2, "render_error": 1}
    assert [r["title"] for r in _rows(workspace)] == ["Alpha", "Epsilon"]


def test_dump_without_articles_fails_and_writes_nothing(workspace, tmp_path):
    pages = [sample_pages()[2], sample_pages()[3], sample_pages()[4]]
    dump = write_dump(tmp_path / "d.xml.bz2", pages)
    with pytest.raises(SourceError, match=r"no articles in this dump \(") as caught:
        _ingest(workspace, dump)
    assert str(dump) in str(caught.value)
    assert list(workspace.ingest.parent.iterdir()) == []


def _bad_dump(tmp_path, kind):
    """A dump of 199 articles, made into a bad input of ``kind``.

    It is multistream, so that a truncated copy fails only after more than one batch of
    pages was read (and sent to the workers): the error strikes mid-stage.
    """
    pages = [article(i, f"T{i}") for i in range(1, 200)]
    path = write_dump(tmp_path / "bad.xml.bz2", pages, "multistream")
    raw = path.read_bytes()
    if kind == "missing":
        path.unlink()
    elif kind == "truncated":
        path.write_bytes(raw[:-100])
    elif kind == "corrupt":
        path.write_bytes(b"BZh9" + bytes(range(7, 250)) * 8)
    elif kind == "malformed":
        xml = bz2.decompress(raw).replace(b"</title>", b"</titel>", 3)
        path.write_bytes(bz2.compress(xml))
    elif kind == "empty":
        path.write_bytes(b"")
    return path


def _pages_before_error(path):
    pages = iter(DumpReader(path))
    count = 0
    while True:
        try:
            next(pages)
        except SourceError:
            return count
        count += 1


def test_truncated_dump_fails_after_a_full_batch(tmp_path):
    # So that the truncated case below fails while workers hold pages and shards are open.
    assert _pages_before_error(_bad_dump(tmp_path, "truncated")) > ingest._BATCH_PAGES


@pytest.mark.parametrize(
    ("kind", "workers", "decoder"),
    [
        ("missing", 1, "auto"),
        ("truncated", 1, "python"),
        ("truncated", 2, "python"),
        pytest.param("truncated", 2, "lbzip2", marks=needs_lbzip2),
        ("corrupt", 1, "python"),
        pytest.param("corrupt", 2, "lbzip2", marks=needs_lbzip2),
        ("malformed", 1, "auto"),
        ("empty", 1, "auto"),
    ],
    ids=[
        "missing",
        "truncated",
        "truncated-2-workers",
        "truncated-lbzip2",
        "corrupt",
        "corrupt-lbzip2",
        "malformed",
        "empty",
    ],
)
def test_bad_input_keeps_the_previous_output(
    workspace, tmp_path, tiny_dump, kind, workers, decoder
):
    _ingest(workspace, tiny_dump)
    before = _snapshot(workspace.ingest)
    bad = _bad_dump(tmp_path, kind)
    with pytest.raises(SourceError) as caught:
        _ingest(workspace, bad, workers=workers, bz2_decoder=decoder)
    assert str(bad) in str(caught.value)
    assert _snapshot(workspace.ingest) == before
    assert sorted(p.name for p in workspace.ingest.parent.iterdir()) == ["ingest"]


@needs_lbzip2
def test_lbzip2_and_the_bz2_module_write_identical_shards(workspace, tmp_path):
    pages = [article(i, f"Town {i}") for i in range(1, 151)]
    dump = write_dump(tmp_path / "many.xml.bz2", pages, "multistream")
    by_module = _ingest(workspace, dump, workers=2, shard_docs=40, bz2_decoder="python")
    shards = {path.name: path.read_bytes() for path in _shards(workspace)}
    by_lbzip2 = _ingest(workspace, dump, workers=2, shard_docs=40, bz2_decoder="lbzip2")
    assert {path.name: path.read_bytes() for path in _shards(workspace)} == shards
    assert len(shards) == 4
    assert by_lbzip2.model_dump(exclude={"seconds"}) == by_module.model_dump(exclude={"seconds"})


@pytest.mark.parametrize(
    ("decoder", "reason"),
    [("python", "Invalid data stream"), pytest.param("lbzip2", "lbzip2: ", marks=needs_lbzip2)],
)
def test_the_chosen_bz2_decoder_reads_the_dump(workspace, tmp_path, decoder, reason):
    with pytest.raises(SourceError, match=reason):
        _ingest(workspace, _bad_dump(tmp_path, "corrupt"), bz2_decoder=decoder)


def _long_pages(count, chars):
    words = " ".join(f"word{i % 97}" for i in range(chars // 7))
    return [WikiPage(i, f"Long {i}", f"{words}.") for i in range(1, count + 1)]


def test_batches_and_row_groups_bound_ingests_memory(workspace, tmp_path):
    """Chunks of about 1 MB of XML go to the workers; row groups hold about 2 MB."""
    dump = write_dump(tmp_path / "long.xml", _long_pages(60, 50_000), "none")
    reader = DumpReader(dump)
    chunks = [chunk for chunk, _ in ingest._work_items(reader, make_params().ingest)]
    assert len(chunks) > 1
    assert max(len(chunk.data) for chunk in chunks) < 1_060_000
    assert sum(chunk.pages for chunk in chunks) == 60
    _ingest(workspace, dump)
    groups = pq.ParquetFile(_shards(workspace)[0]).metadata
    texts = [len(row["text"]) for row in _rows(workspace)]
    assert groups.num_rows == 60
    assert sum(texts) > 2_900_000
    sizes = [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]
    assert max(sizes) * max(texts) < 2_150_000  # every group: about 2 MB of text or less


def _lbzip2_threads(**options):
    return ingest.lbzip2_threads(make_params(ingest=options).ingest)


def test_bz2_is_decoded_by_the_bz2_module_when_asked_or_without_lbzip2(tmp_path, monkeypatch):
    assert _lbzip2_threads(bz2_decoder="python", workers=3) == 0
    monkeypatch.setenv("PATH", str(tmp_path))  # no lbzip2 on it
    assert _lbzip2_threads(bz2_decoder="auto", workers=3) == 0


@needs_lbzip2
def test_lbzip2_gets_a_thread_per_two_workers():
    assert _lbzip2_threads(bz2_decoder="lbzip2", workers=3) == 2
    assert _lbzip2_threads(bz2_decoder="auto", workers=4) == 2
    assert _lbzip2_threads(workers=1) == 1
    assert _lbzip2_threads(workers=0) == (worker_count(0) + 1) // 2


def _cli(tmp_path, params_yaml):
    params = tmp_path / "params.yaml"
    params.write_text(params_yaml)
    return subprocess.run(
        [sys.executable, "-m", "components", "ingest", "--params", str(params)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_cli_reports_every_bad_param_at_once(tmp_path):
    done = _cli(
        tmp_path,
        "ingest:\n"
        "  surprise: 1\n"  # unknown key
        "  shard_docs: many\n"  # wrong type
        "  workers: -1\n"  # out of range
        "clean:\n"
        "  min_words: 100\n"  # cross-field: more than max_words
        "  max_words: 10\n",
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ingest: invalid configuration in ")
    assert "(4 problems)" in done.stderr
    for key in ("ingest.surprise", "ingest.shard_docs", "ingest.workers", "clean.min_words"):
        assert f"  {key}: " in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_cli_missing_dump_is_one_line_with_exit_1(tmp_path):
    done = _cli(tmp_path, "ingest:\n  source: nowhere.xml.bz2\n  workers: 1\n")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ingest: ")
    assert str(tmp_path / "nowhere.xml.bz2") in lines[0]
    assert not (tmp_path / "metrics").exists()


def test_a_killed_ingest_goes_on_after_the_last_shard_written(workspace, tmp_path):
    pages = [article(i, f"Town {i}") for i in range(1, 400)]
    pages[50:50] = sample_pages()[2:5]  # redirects and other outcomes between shards
    dump = write_dump(tmp_path / "towns.xml.bz2", pages, "multistream")
    options = {"source": str(dump), "shard_docs": 10, "workers": 1}
    params = stage_params(workspace.root, ingest=options)
    done = work_folder(workspace.ingest) / "done"
    log = tmp_path / "ingest.log"
    finished, output = kill_and_rerun("ingest", params, done, 4, workspace.ingest, log)
    assert finished < 40
    assert f"ingest: {finished} shards were written by an earlier run" in output
    resumed = dir_digest(workspace.ingest)
    result = ingest.run(make_params(ingest=options), workspace)  # uninterrupted
    assert dir_digest(workspace.ingest) == resumed
    assert result.shards == 40
    assert result.outcomes["kept"] == 399
    assert sum(result.outcomes.values()) == 402
    assert not work_folder(workspace.ingest).exists()
