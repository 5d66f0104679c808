"""Products read from the real data files and from product files, field by field."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from streams.catalog.exceptions import CatalogError
from streams.catalog.products import (
    Product,
    clean_title,
    read_online_retail,
    read_product_file,
    read_rees46,
)
from streams.datasets.readers import head_noun
from tests.conftest import ONLINE_RETAIL, REES46


@pytest.fixture(scope="module")
def rees46() -> dict[str, Product]:
    return {p.product_id: p for p in read_rees46(REES46)}


@pytest.fixture(scope="module")
def online_retail() -> dict[str, Product]:
    return {p.product_id: p for p in read_online_retail(ONLINE_RETAIL, limit=800)}


def test_rees46_products_from_real_rows(rees46: dict[str, Product]) -> None:
    assert len(rees46) == 6493  # the data README's product count
    heater = rees46["3900821"]
    assert (heater.title, heater.category, heater.brand, heater.source) == (
        "aqua water heater",
        "appliances.environment.water_heater",
        "aqua",
        "rees46",
    )
    assert heater.category_path == ["appliances", "appliances.environment", "appliances.environment.water_heater"]
    assert heater.embedding_text() == "aqua water heater, appliances environment"
    assert rees46["1307067"].title == "lenovo notebook"
    assert rees46["17200506"].title == "sofa"  # no brand
    assert rees46["44600062"].title == "product 44600062 by shiseido"  # no category code


def test_rees46_price_is_the_latest_seen(rees46: dict[str, Product], tmp_path: Path) -> None:
    assert rees46["3900821"].price == 33.20
    path = tmp_path / "events.csv"
    with REES46.open(newline="") as fh:
        header, first = fh.readline(), fh.readline()
    later = first.replace(",35.79,", ",31.00,").replace("2019-10-01 00:00:00", "2019-10-01 01:00:00")
    path.write_text(header + first + later + first.replace(",35.79,", ",,"))
    (product,) = read_rees46(path)
    assert product.price == 31.00  # latest non-empty price


def test_rees46_limit_keeps_first_products() -> None:
    limited = read_rees46(REES46, limit=50)
    assert [p.product_id for p in limited] == [p.product_id for p in read_rees46(REES46)[:50]]


def test_online_retail_products_from_real_rows(online_retail: dict[str, Product]) -> None:
    assert len(online_retail) == 800
    ball = online_retail["85048"]
    assert (ball.title, ball.category, ball.brand, ball.source) == (
        "15cm Christmas Glass Ball 20 Lights",
        "lights",
        None,
        "online-retail",
    )
    assert online_retail["21232"].title == "Strawberry Ceramic Trinket Box"
    assert online_retail["21232"].category == "box"
    assert not {"POST", "M", "DOT", "D", "C2", "BANK CHARGES"} & set(online_retail)
    assert all(p.price is not None and p.price > 0 for p in online_retail.values())


def test_online_retail_category_is_the_replay_head_noun(online_retail: dict[str, Product]) -> None:
    """Every product's category is what the replay reader gives an event of that product."""
    seen: dict[str, set[str | None]] = {}
    with gzip.open(ONLINE_RETAIL, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            seen.setdefault(row["StockCode"], set()).add(head_noun(row["Description"].strip()))
    checked = [pid for pid in online_retail if pid in seen]
    assert len(checked) == len(online_retail)
    assert all(online_retail[pid].category in seen[pid] for pid in checked)


def test_online_retail_last_price_wins(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    path.write_text(
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
        "1,A1,HEART MEASURING SPOONS LARGE,2,2010-01-01 10:00:00,1.65,1.0,UK\n"
        "C2,A1,HEART MEASURING SPOONS LARGE,-1,2010-01-02 10:00:00,9.99,1.0,UK\n"
        "3,A1,damaged,-5,2010-01-03 10:00:00,0,,UK\n"
        "4,A1,HEART MEASURING SPOONS LARGE,1,2010-01-04 10:00:00,1.95,1.0,UK\n"
        "5,POST,POSTAGE,1,2010-01-04 10:00:00,18,1.0,UK\n"
    )
    (spoons,) = read_online_retail(path)
    assert (spoons.product_id, spoons.title, spoons.category, spoons.price) == (
        "A1",
        "Heart Measuring Spoons Large",
        "large",
        1.95,
    )


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("DOG BOWL , CHASING BALL DESIGN", "Dog Bowl, Chasing Ball Design"),
        ('RECORD FRAME 7" SINGLE SIZE ', 'Record Frame 7" Single Size'),
        ("  PINK   CHERRY LIGHTS", "Pink Cherry Lights"),
        ("SET/6 T-LIGHT HOLDERS", "Set/6 T-light Holders"),
    ],
)
def test_clean_title(raw: str, clean: str) -> None:
    assert clean_title(raw) == clean


def test_product_file_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text(
        "product_id,title,category,brand,price,in_stock\n"
        "p1,Wireless Headphones,electronics.audio.headphone,sony,99.5,false\n"
        "p2,Gift Card,,,,\n"
    )
    jsonl_path = tmp_path / "p.jsonl"
    jsonl_path.write_text(
        '{"product_id": 7, "title": "Yoga Mat", "category": "sports.fitness", "brand": null, "price": 20}\n\n'
    )
    a, b = read_product_file(csv_path)
    assert a == Product("p1", "Wireless Headphones", "electronics.audio.headphone", "sony", 99.5, False, "file")
    assert b == Product("p2", "Gift Card", None, None, None, True, "file")
    (c,) = read_product_file(jsonl_path)
    assert (c.product_id, c.price, c.in_stock, c.category_path) == ("7", 20.0, True, ["sports", "sports.fitness"])


def test_product_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("product_id,title,price\np1,Mug,1.5\np2,Lamp,cheap\n")
    with pytest.raises(CatalogError, match=r"bad.csv:3: price: "):
        read_product_file(bad)
    no_ids = tmp_path / "noid.csv"
    no_ids.write_text("sku,title\n1,Mug\n")
    with pytest.raises(CatalogError, match="no 'product_id' column"):
        read_product_file(no_ids)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"product_id": "1", "title": "Mug"}\n{not json\n')
    with pytest.raises(CatalogError, match=r"broken.jsonl:2: not JSON"):
        read_product_file(broken)
