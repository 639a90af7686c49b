"""A dump in another language goes through every data stage by changing two params."""

from __future__ import annotations

import json
import random

from components.cli import run_stage_in_process
from components.data.validate import markup_leftovers
from tests.corpora import iter_documents
from tests.dumps import WikiPage, write_dump

# Sentence templates: each article fills them with its own names and numbers, so articles
# are neither repetitive inside nor near duplicates of each other.
SENTENCES = [
    "Градът {name} е разположен на брега на река {river} и има пазар всяка {day}.",
    "Той е основан от селяни, които дошли в долината през {year} година със своите семейства.",
    "През {century} век до {name} стигнала железница и градът започнал бързо да расте.",
    "Днес в {name} има {n} училища, болница и музей на местната история.",
    "Около града се простират полета с {crop}, които дават работа на {n} души.",
    "Старата църква в центъра е построена от камък през {year} година.",
    "Всяка година през {season} в {name} се провежда фестивал на народната музика.",
    "Жителите на {name} се занимават със земеделие, търговия и занаяти от {century} век насам.",
    "На хълма над {name} се намират развалините на крепост, строена преди {n} години.",
    "Климатът в района на {river} е умерен, а средната температура е {n} градуса.",
    "Реката {river} е богата на риба и през нея минава стар каменен мост с {n} арки.",
    "В близост до {name} има минерални извори, които привличат {n} туристи всяка година.",
]
RIVERS = ["Искър", "Марица", "Янтра", "Струма", "Тунджа", "Осъм", "Вит", "Места"]
CROPS = ["пшеница", "царевица", "слънчоглед", "рози", "тютюн", "лозя"]
DAYS = ["неделя", "събота", "сряда", "петък"]
SEASONS = ["лятото", "пролетта", "есента", "зимата"]


def _article(page_id: int) -> WikiPage:
    rng = random.Random(page_id)

    def fill(template: str) -> str:
        return template.format(
            name=f"Град{page_id}",
            river=rng.choice(RIVERS),
            crop=rng.choice(CROPS),
            day=rng.choice(DAYS),
            season=rng.choice(SEASONS),
            n=rng.randrange(2, 9999),
            year=rng.randrange(1000, 1900),
            century=rng.choice(["XVIII", "XIX", "XX"]),
        )

    chosen = [fill(t) for t in rng.sample(SENTENCES, 10)]
    text = (
        f"'''Град{page_id}''' е град в [[България]]. {' '.join(chosen[:6])}\n\n"
        f"== История ==\n{' '.join(chosen[6:])} "
        f"Населението е около {{{{formatnum:{page_id * 1000}}}}} души.<ref>Преброяване</ref>\n"
        f"[[Файл:Град{page_id}.jpg|мини|Изглед]]\n[[Категория:Градове в България]]\n"
    )
    return WikiPage(page_id, f"Град {page_id}", text)


def test_bulgarian_dump_goes_through_every_data_stage(tmp_path):
    names = {"media": "Медия", "file": "Файл", "category": "Категория"}
    write_dump(
        tmp_path / "bgwiki-pages-articles.xml.bz2",
        [_article(i) for i in range(1, 41)],
        lang="bg",
        names=names,
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        "ingest:\n  source: bgwiki-pages-articles.xml.bz2\n  workers: 1\n"
        "clean:\n  language: bg\n  workers: 1\n"
        "tokenize:\n  vocab_size: 400\n  val_fraction: 0.2\n"
    )
    data_stages = ("ingest", "clean", "validate", "tokenize")
    metrics = {stage: run_stage_in_process(stage, params) for stage in data_stages}
    assert metrics["ingest"]["documents"] == 40
    assert metrics["clean"]["documents_out"] >= 30
    assert metrics["validate"]["success"] is True
    assert metrics["tokenize"]["bytes_per_token_val"] > 1
    texts = [doc.text for doc in iter_documents(tmp_path / "data" / "clean")]
    assert all(markup_leftovers(t) == 0 for t in texts)
    assert not any("Файл" in t or "Категория" in t or "мини" in t for t in texts)
    meta = json.loads((tmp_path / "data" / "clean" / "meta.json").read_text())
    assert meta["params"]["language"] == "bg"
