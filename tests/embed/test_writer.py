"""The embedding writers: chunked part files, atomic merge, resume without duplicates, and refusal of outputs
made with other settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clipctl.embed.writer import ClipRetrievalStore, ParquetStore
from clipctl.errors import ClipctlError

SETTINGS = {
    "model": "m",
    "pretrained": "t",
    "precision": "fp32",
    "normalize": "true",
    "modality": "image",
    "fast_decode": "false",
}


def _store(out, chunk_rows=4, **overrides):
    return ParquetStore(out, {**SETTINGS, **overrides}, "path", pa.string(), chunk_rows=chunk_rows)


def _rows(n, start=0, dim=3):
    keys = [f"img{i}.jpg" for i in range(start, start + n)]
    return keys, np.arange(start * dim, (start + n) * dim, dtype=np.float32).reshape(n, dim)


def test_parts_are_written_as_chunks_fill_and_merged_into_one_file(tmp_path):
    out = tmp_path / "emb.parquet"
    store = _store(out)
    for start in range(0, 10, 2):
        store.add(*_rows(2, start), {})
    parts = sorted(p.name for p in (tmp_path / "emb.parquet.parts").glob("part-*.parquet"))
    assert parts == ["part-00000.parquet", "part-00001.parquet"]  # 8 rows flushed, 2 still buffered
    assert not out.exists()
    assert store.finalize() == 10
    assert not (tmp_path / "emb.parquet.parts").exists() and not (tmp_path / "emb.parquet.partial").exists()

    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 3)
    meta = table.schema.metadata
    assert meta[b"model"] == b"m" and meta[b"pretrained"] == b"t" and meta[b"dim"] == b"3"
    df = pd.read_parquet(out)
    assert list(df.path) == [f"img{i}.jpg" for i in range(10)]
    np.testing.assert_array_equal(np.stack(df.embedding), _rows(10)[1])


def test_resume_reads_done_keys_from_output_and_parts_and_never_duplicates(tmp_path):
    out = tmp_path / "emb.parquet"
    first = _store(out)
    first.add(*_rows(4), {})
    first.finalize()
    second = _store(out)
    assert second.done_keys() == {f"img{i}.jpg" for i in range(4)}
    second.add(*_rows(4, start=4), {})  # a part
    # A crash after the merged file replaced OUT but before the parts were removed: the part's rows are
    # already in OUT; merging again must not duplicate them.
    parts_dir = tmp_path / "emb.parquet.parts"
    kept = (parts_dir / "part-00000.parquet").read_bytes()
    second.finalize()
    parts_dir.mkdir()
    (parts_dir / "part-00000.parquet").write_bytes(kept)
    third = _store(out)
    assert len(third.done_keys()) == 8
    assert third.finalize() == 8
    assert list(pd.read_parquet(out).path) == [f"img{i}.jpg" for i in range(8)]


def test_output_from_other_settings_or_other_tools_is_refused(tmp_path):
    out = tmp_path / "emb.parquet"
    store = _store(out)
    store.add(*_rows(2), {})
    store.flush()
    with pytest.raises(ClipctlError, match="model=m.*this run uses model=other"):
        _store(out, model="other")  # the parts' manifest
    store.finalize()
    with pytest.raises(ClipctlError, match="precision=fp32.*precision=bf16"):
        _store(out, precision="bf16")
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"path": ["a"]}), foreign)
    with pytest.raises(ClipctlError, match="not written by `clipctl embed`"):
        _store(foreign)
    junk = tmp_path / "junk.parquet"
    junk.write_text("hello")
    with pytest.raises(ClipctlError, match="not a Parquet file"):
        _store(junk)


def test_clip_retrieval_layout_resumes_and_drops_an_interrupted_chunk(tmp_path):
    out = tmp_path / "cr"
    settings = {**SETTINGS}
    store = ClipRetrievalStore(out, settings, "image_path", chunk_rows=4)
    store.add(*_rows(4), {})
    store.add(*_rows(2, start=4), {})
    assert store.finalize() == 6
    assert sorted(p.name for p in (out / "img_emb").iterdir()) == ["img_emb_0.npy", "img_emb_1.npy"]
    emb = np.load(out / "img_emb" / "img_emb_0.npy")
    assert emb.dtype == np.float16 and emb.shape == (4, 3)
    assert list(pd.read_parquet(out / "metadata" / "metadata_1.parquet").image_path) == [
        "img4.jpg",
        "img5.jpg",
    ]

    np.save(out / "img_emb" / "img_emb_2.npy", np.zeros((1, 3), np.float16))  # its metadata never came
    again = ClipRetrievalStore(out, settings, "image_path", chunk_rows=4)
    assert not (out / "img_emb" / "img_emb_2.npy").exists()
    assert len(again.done_keys()) == 6
    with pytest.raises(ClipctlError, match="normalize=true.*normalize=false"):
        ClipRetrievalStore(out, {**settings, "normalize": "false"}, "image_path")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(ClipctlError, match="not written by `clipctl embed`"):
        ClipRetrievalStore(tmp_path / "other", settings, "image_path")
