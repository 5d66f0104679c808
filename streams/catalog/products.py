"""Products, built from the data we have: REES46 events, Online Retail invoice lines, or a product file.

- REES46 has no product names: the title is brand + category leaf ("samsung smartphone"), or
  "product <id> by <brand>" when the category code is missing. The latest price seen wins.
- Online Retail: the title is the description, cleaned and title-cased; the category is the
  description's head noun, exactly as the replay reader derives it, so events and products agree.
  Postage, fees, manual adjustments and gift vouchers are not merchandise and are left out.
- A product file (CSV or JSONL) with ``product_id,title,category,brand,price[,in_stock]``.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from streams.catalog.exceptions import CatalogError
from streams.datasets.readers import head_noun, open_text, rees46_category


class ProductSource(StrEnum):
    REES46 = "rees46"
    ONLINE_RETAIL = "online-retail"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    category: str | None
    brand: str | None
    price: float | None
    in_stock: bool = True
    source: str = ProductSource.FILE.value

    @property
    def category_path(self) -> list[str]:
        """Every prefix of the dot path: "a.b.c" -> ["a", "a.b", "a.b.c"] (what a category filter matches)."""
        if not self.category:
            return []
        parts = self.category.split(".")
        return [".".join(parts[: i + 1]) for i in range(len(parts))]

    def embedding_text(self) -> str:
        """The title plus the category words it lacks, so "pioneer player" says it is a car accessory."""
        if not self.category:
            return self.title
        title_words = set(self.title.lower().split())
        extra = [w for part in self.category.split(".") for w in part.split("_") if w not in title_words]
        return f"{self.title}, {' '.join(dict.fromkeys(extra))}" if extra else self.title

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Product:
        return cls(**data)


class ProductRow(BaseModel):
    """One row of a product file; validated because the file comes from outside."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)

    product_id: str
    title: str
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    in_stock: bool = True

    @field_validator("product_id", "title")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("category", "brand", "price", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("in_stock", mode="before")
    @classmethod
    def _blank_is_in_stock(cls, value: object) -> object:
        return True if value in ("", None) else value


def read_rees46(path: Path, limit: int | None = None) -> list[Product]:
    """One product per product id in order of first appearance; fields from its latest event."""
    latest: dict[str, dict[str, str]] = {}
    for row in _csv_rows(path, "product_id"):
        pid = row["product_id"]
        if pid not in latest and limit is not None and len(latest) >= limit:
            continue
        previous = latest.get(pid, {})
        latest[pid] = {k: v or previous.get(k, "") for k, v in row.items()}
    return [_rees46_product(pid, row) for pid, row in latest.items()]


def _rees46_product(pid: str, row: dict[str, str]) -> Product:
    category = rees46_category(row)  # the events' key, so fusion and the teacher see the events' categories
    brand = row["brand"] or None
    if row["category_code"]:
        leaf = row["category_code"].rsplit(".", 1)[-1].replace("_", " ")
        title = f"{brand} {leaf}" if brand else leaf
    else:
        title = f"product {pid} by {brand}" if brand else f"product {pid}"
    price = float(row["price"]) if row["price"] else None
    return Product(pid, title, category, brand, price, True, ProductSource.REES46.value)


# Online Retail codes that are not merchandise: postage, manual lines, discounts, carriage, fees, tests, vouchers.
_SERVICE_CODE = re.compile(r"^(POST|DOT|M|C2|D|S|B|CRUK|PADS|AMAZONFEE|BANK CHARGES|ADJUST\d*|TEST\d*|gift_.*)$", re.I)


def read_online_retail(path: Path, limit: int | None = None) -> list[Product]:
    """One product per stock code sold (first sale order): its most frequent description, its last price."""
    descriptions: dict[str, Counter[str]] = {}
    prices: dict[str, float] = {}
    for row in _csv_rows(path, "StockCode"):
        code, description = row["StockCode"].strip(), row["Description"].strip()
        if row["Invoice"].startswith("C") or not description or _SERVICE_CODE.match(code):
            continue
        try:
            quantity, price = int(row["Quantity"]), float(row["Price"])
        except ValueError:
            continue
        if quantity <= 0 or price <= 0:
            continue
        if code not in descriptions:
            if limit is not None and len(descriptions) >= limit:
                continue
            descriptions[code] = Counter()
        descriptions[code][description] += 1
        prices[code] = price
    products = []
    for code, counts in descriptions.items():
        description = counts.most_common(1)[0][0]
        products.append(
            Product(
                code,
                clean_title(description),
                head_noun(description),
                None,
                prices[code],
                True,
                ProductSource.ONLINE_RETAIL.value,
            )
        )
    return products


def clean_title(description: str) -> str:
    """ "DOG BOWL , CHASING BALL DESIGN" -> "Dog Bowl, Chasing Ball Design"; "15CM" stays "15cm"."""
    text = re.sub(r"\s+([,.;:!?)])", r"\1", " ".join(description.split()))
    return " ".join(w[0].upper() + w[1:].lower() if w[0].isalpha() else w.lower() for w in text.split())


def read_product_file(path: Path, limit: int | None = None) -> list[Product]:
    """CSV (header row) or JSONL with ``product_id,title,category,brand,price[,in_stock]``."""
    name = path.name.lower()
    rows: Iterable[tuple[int, dict[str, Any]]]
    rows = _jsonl_rows(path) if name.endswith((".jsonl", ".jsonl.gz")) else enumerate(_csv_rows(path, "product_id"), 2)
    products: list[Product] = []
    for line_no, raw in rows:
        if limit is not None and len(products) >= limit:
            break
        try:
            row = ProductRow.model_validate(raw)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise CatalogError(f"{path}:{line_no}: {where}: {problem['msg']}") from None
        products.append(
            Product(
                row.product_id,
                row.title,
                row.category,
                row.brand,
                row.price,
                row.in_stock,
                ProductSource.FILE.value,
            )
        )
    return products


def _csv_rows(path: Path, required: str) -> Iterator[dict[str, str]]:
    if not path.is_file():
        raise CatalogError(f"{path}: no such file")
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        if required not in (reader.fieldnames or []):
            raise CatalogError(f"{path}: no {required!r} column (header: {', '.join(reader.fieldnames or [])})")
        yield from reader


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise CatalogError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CatalogError(f"{path}:{line_no}: not JSON ({exc})") from None
            if not isinstance(data, dict):
                raise CatalogError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, data
