"""Readers for REES46, UCI Online Retail II and JSONL event logs."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from streams.contracts.events import ClickEvent, decode_event
from streams.datasets.exceptions import ReplayError
from streams.datasets.readers import SourceFormat, detect_format, read_source

SHARED_DATA = Path(os.environ.get("VITRINE_SHARED_DATA", "/work/shared/data"))

REES46_HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
RETAIL_HEADER = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def events(path: Path, **kw: object) -> list[ClickEvent]:
    log = read_source(path, **kw)  # type: ignore[arg-type]
    out = []
    for rec in log.records:
        e = decode_event(rec.value, max_bytes=8192, key=rec.key)
        assert rec.ts == e.ts
        out.append(e)
    return out


@pytest.fixture
def rees46(tmp_path: Path) -> Path:
    path = tmp_path / "oct.csv"
    path.write_text(
        REES46_HEADER
        + "2019-10-01 00:00:05 UTC,view,1004856,2053,electronics.smartphone,samsung,130.76,541312140,sess-a\n"
        + "2019-10-01 00:00:00 UTC,cart,44600062,2103,,shiseido,35.79,,sess-b\n"
        + "2019-10-01 00:00:05 UTC,purchase,1004856,2053,electronics.smartphone,,130.76,541312140,sess-a\n"
        + "2019-10-01 00:00:03 UTC,view,3900821,2053,appliances.water_heater,aqua,,554748717,sess-c\n"
        + "2019-10-01 00:00:04 UTC,view,3900821,2053,appliances.water_heater,aqua,33.20,554748717,\n"
        + "2019-10-01 00:00:04 UTC,view,3900821,2053,appliances.water_heater,aqua,-1,554748717,sess-c\n"
    )
    return path


RETAIL_ROWS = (
    "489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom\n"
    '489434,22041,"RECORD FRAME 7"" SINGLE SIZE ",48,2009-12-01 07:45:00,2.1,13085.0,United Kingdom\n'
    "C489449,22087,PAPER BUNTING WHITE LACE,-12,2009-12-01 10:33:00,2.95,16321.0,Australia\n"
    "489435,22350,CAT BOWL ,0,2009-12-01 07:46:00,2.55,,United Kingdom\n"
    "489436,21523,DOORMAT FANCY FONT HOME SWEET HOME,-3,2009-12-01 09:06:00,5.95,13078.0,United Kingdom\n"
    "489437,POST,,1,2009-12-01 09:00:00,18.0,,France\n"
    "489438,22111,SCOTTIE DOG HOT WATER BOTTLE,x,2009-12-01 09:10:00,4.95,,United Kingdom\n"
)


@pytest.fixture
def retail(tmp_path: Path) -> Path:
    path = tmp_path / "2009-2010.csv"
    path.write_text(RETAIL_HEADER + RETAIL_ROWS)
    return path


# --- format detection -------------------------------------------------------------------------------


def test_detect_format(tmp_path: Path, rees46: Path, retail: Path) -> None:
    gz = tmp_path / "retail.csv.gz"
    gz.write_bytes(gzip.compress((RETAIL_HEADER + RETAIL_ROWS).encode()))
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("not even json\n")
    assert detect_format(rees46) is SourceFormat.REES46
    assert detect_format(retail) is SourceFormat.ONLINE_RETAIL
    assert detect_format(gz) is SourceFormat.ONLINE_RETAIL
    assert detect_format(jsonl) is SourceFormat.JSONL
    assert detect_format(tmp_path / "EVENTS.JSONL.GZ") is SourceFormat.JSONL


def test_unknown_header_is_a_replay_error(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("timestamp,user,action\n1,2,3\n")
    with pytest.raises(ReplayError, match=r"cannot tell the format.*timestamp,user,action"):
        detect_format(path)
    with pytest.raises(ReplayError, match="cannot tell the format"):
        read_source(path)


def test_missing_file_is_a_replay_error(tmp_path: Path) -> None:
    for name in ("absent.csv", "absent.jsonl"):
        with pytest.raises(ReplayError, match="no such file"):
            read_source(tmp_path / name)


def test_explicit_format_overrides_detection(rees46: Path) -> None:
    log = read_source(rees46, SourceFormat.JSONL)
    assert len(log.records) == 7  # the header line too: every line verbatim
    assert all(r.key is None for r in log.records)


# --- REES46 -----------------------------------------------------------------------------------------


def test_rees46_rows_become_events(rees46: Path) -> None:
    log = read_source(rees46)
    assert log.skipped == {"invalid row: ValidationError": 2}  # empty session, negative price
    evs = [decode_event(r.value, max_bytes=8192, key=r.key) for r in log.records]
    by_id = {e.event_id: e for e in evs}
    assert set(by_id) == {"oct:2", "oct:3", "oct:4", "oct:5"}
    view = by_id["oct:2"]
    assert (view.session_id, view.user_id, view.event_type, view.product_id) == (
        "sess-a",
        "541312140",
        "view",
        "1004856",
    )
    assert (view.category, view.brand, view.price) == ("electronics.smartphone", "samsung", 130.76)
    assert view.ts == 1569888005000 == ms("2019-10-01T00:00:05")
    cart = by_id["oct:3"]
    assert (cart.user_id, cart.category, cart.brand, cart.price, cart.ts) == (
        None,
        "2103",  # no category_code: the category_id stands in
        "shiseido",
        35.79,
        1569888000000,
    )
    assert by_id["oct:4"].brand is None
    assert by_id["oct:5"].price is None and by_id["oct:5"].category == "appliances.water_heater"


def test_output_is_time_ordered_and_stable(rees46: Path) -> None:
    log = read_source(rees46)
    stamps = [r.ts or 0 for r in log.records]
    assert None not in [r.ts for r in log.records] and stamps == sorted(stamps)
    ids = [orjson.loads(r.value)["event_id"] for r in log.records]
    # oct:2 and oct:4 share a timestamp and keep file order
    assert ids == ["oct:3", "oct:5", "oct:2", "oct:4"]
    assert [r.key for r in log.records] == [b"sess-b", b"sess-c", b"sess-a", b"sess-a"]


def test_limit(rees46: Path) -> None:
    full = read_source(rees46).records
    assert read_source(rees46, limit=2).records == full[:2]


def test_repeat_gives_distinct_later_passes(rees46: Path) -> None:
    one = events(rees46)
    three = events(rees46, repeat=3)
    n = len(one)
    assert len(three) == 3 * n
    passes = [three[i * n : (i + 1) * n] for i in range(3)]
    assert passes[0] == one
    sessions = [{e.session_id for e in p} for p in passes]
    assert not (sessions[0] & sessions[1]) and not (sessions[1] & sessions[2]) and not (sessions[0] & sessions[2])
    assert len({e.event_id for e in three}) == 3 * n
    for r in (1, 2):
        assert max(e.ts for e in passes[r - 1]) < min(e.ts for e in passes[r])
        # same order and same content in every pass, just renamed and shifted in time
        shift = passes[r][0].ts - one[0].ts
        assert [(e.product_id, e.event_type, e.ts - shift) for e in passes[r]] == [
            (e.product_id, e.event_type, e.ts) for e in one
        ]
        assert [e.session_id.rsplit("~", 1)[0] for e in passes[r]] == [e.session_id for e in one]
    assert [e.ts for e in three] == sorted(e.ts for e in three)


def test_repeat_of_an_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(REES46_HEADER)
    assert read_source(path, repeat=5).records == []


# --- Online Retail ----------------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_online_retail_rows(tmp_path: Path, retail: Path, compressed: bool) -> None:
    path = retail
    if compressed:
        path = tmp_path / "2009-2010.csv.gz"
        path.write_bytes(gzip.compress(retail.read_bytes()))
    log = read_source(path)
    assert log.skipped == {"cancellation": 1, "non-positive quantity": 2, "invalid row: ValueError": 1}
    evs = [decode_event(r.value, max_bytes=8192, key=r.key) for r in log.records]
    assert [e.event_id for e in evs] == ["2009-2010:2", "2009-2010:3", "2009-2010:7"]
    lights, frame, post = evs
    assert {e.event_type for e in evs} == {"purchase"}
    assert (lights.session_id, lights.user_id, lights.product_id, lights.category, lights.price) == (
        "inv-489434",
        "13085",
        "85048",
        "lights",
        6.95,
    )
    assert lights.ts == ms("2009-12-01T07:45:00")
    assert frame.category == "size"  # trailing blank of the description ignored
    assert (post.session_id, post.user_id, post.category, post.ts) == ("inv-489437", None, None, ms("2009-12-01T09:00"))


def test_first_rows_of_the_real_files(tmp_path: Path) -> None:
    rees = SHARED_DATA / "rees46" / "2019-Oct-head.csv"
    retail = SHARED_DATA / "online-retail-ii" / "2009-2010.csv.gz"
    if not rees.exists() or not retail.exists():
        pytest.skip("shared data not available")
    assert detect_format(rees) is SourceFormat.REES46
    assert detect_format(retail) is SourceFormat.ONLINE_RETAIL
    first = events(rees, limit=3)
    assert first[0].ts == ms("2019-10-01T00:00:00")
    assert first[0].session_id == "72d76fde-8bb3-4e00-8c23-a032dfed738c"
    assert first[0].category == "2103807459595387724" and first[0].brand == "shiseido"  # category_id fallback
    assert first[1].category == "appliances.environment.water_heater"
    # the retail file is 525k lines: read only its head, through the same reader
    with gzip.open(retail, "rt", encoding="utf-8", newline="") as fh:
        head = "".join(next(fh) for _ in range(50))
    assert head.startswith(RETAIL_HEADER)
    path = tmp_path / "2009-2010.csv"
    path.write_text(head)
    evs = events(path)
    assert len(evs) > 40
    assert evs[0].session_id == "inv-489434" and evs[0].user_id == "13085" and evs[0].category == "lights"
    assert all(e.ts >= ms("2009-12-01T07:45:00") for e in evs)


# --- JSONL ------------------------------------------------------------------------------------------


def test_jsonl_lines_are_kept_verbatim(tmp_path: Path) -> None:
    good = b'{"event_id":"e1","session_id":"s1","event_type":"view","product_id":"p","ts":5,"extra":[1,2]}'
    lines = [
        good,
        b"{broken json",
        b'["a","list"]',
        b'{"session_id": 42, "ts": "soon"}',
        b'{"session_id":"s2","ts":3.5,"event_type":"dance"}',
        b'  {"session_id":"s3","ts":1}  ',
    ]
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\r\n".join(lines[:3]) + b"\n\n   \n" + b"\n".join(lines[3:]) + b"\n")
    log = read_source(path)
    assert [r.value for r in log.records] == lines
    assert [r.key for r in log.records] == [b"s1", None, None, None, b"s2", b"s3"]
    assert [r.ts for r in log.records] == [5, None, None, None, None, 1]
    assert not log.skipped


def test_jsonl_gz(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"session_id":"s1","ts":1}\nnot json\n'))
    log = read_source(path)
    assert [(r.key, r.value) for r in log.records] == [(b"s1", b'{"session_id":"s1","ts":1}'), (None, b"not json")]
