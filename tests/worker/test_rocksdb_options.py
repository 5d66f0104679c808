"""The RocksDB memory settings reach the databases Faust opens for both worker tables.

Why: Faust's defaults (2 GiB block cache and 3 x 64 MiB memtables per table and partition) are an OOM kill
waiting under a 1 GiB pod limit, and a setting that silently stops reaching the store looks the same as one
that works until the store has grown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streams.runtime.settings import Settings, StoreKind, describe_error
from streams.worker.app import TABLES, create_app, rocksdb_memory_bound

MiB = 1024**2


def options_file(db_path: Path) -> dict[str, str]:
    """``key=value`` lines of the newest OPTIONS file RocksDB wrote for a database (what it actually runs with)."""
    newest = max(db_path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    pairs = (line.strip().partition("=") for line in newest.read_text().splitlines() if "=" in line)
    return {key: value for key, _, value in pairs}


def test_both_tables_open_their_partitions_with_the_configured_bounds(tmp_path: Path) -> None:
    settings = Settings(
        store=StoreKind.ROCKSDB,
        data_dir=tmp_path,
        topic_partitions=2,
        rocksdb_block_cache_bytes=12 * MiB,
        rocksdb_write_buffer_bytes=3 * MiB,
        rocksdb_write_buffers=3,
        rocksdb_max_open_files=77,
    )
    app, worker = create_app(settings)
    # rocksdb_memory_bound (what k8s sizing relies on) counts every table the worker has.
    assert set(app.tables) == set(TABLES)
    assert rocksdb_memory_bound(settings) == len(TABLES) * 2 * (12 + 3 * 3) * MiB
    for table in (worker.table, worker.ranker_table):
        store: Any = table.data
        for partition in range(settings.topics.topic_partitions):
            db = store._db_for_partition(partition)  # opens it as an assignment would
            assert db.property_int_value("rocksdb.block-cache-capacity") == 12 * MiB
            opts = options_file(store.partition_path(partition))
            assert opts["write_buffer_size"] == str(3 * MiB)
            assert opts["max_write_buffer_number"] == "3"
            assert opts["max_open_files"] == "77"
            db.close()


def test_the_default_bounds_are_far_below_faust_defaults() -> None:
    worker = Settings().worker
    # Faust's own: 2 GiB + 3 x 64 MiB per database.
    assert worker.rocksdb_bytes_per_database() <= (2 * 1024 + 3 * 64) * MiB // 50


def test_memory_store_gets_no_rocksdb_options(tmp_path: Path) -> None:
    _, worker = create_app(Settings(store=StoreKind.MEMORY, data_dir=tmp_path))
    assert worker.table.options is None and worker.ranker_table.options is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [("VITRINE_ROCKSDB_WRITE_BUFFERS", "1"), ("VITRINE_ROCKSDB_BLOCK_CACHE_BYTES", "64MiB")],
)
def test_a_bad_rocksdb_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as err:
        Settings()
    message = describe_error(err.value)
    assert message.startswith(f"{variable}={value!r}: ") and "\n" not in message
