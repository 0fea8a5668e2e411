"""Benchmark: `clipctl index` / `clipctl search` / `clipctl serve` against plain numpy exact search (and
clip-retrieval's index, autofaiss, when a Python with it is given), same vectors, one run.

    python bench/search.py                                   # 200,000 random 512-d vectors + 20,000 images
    python bench/search.py --demo-dir demo                   # real embeddings from `clipctl demo`'s model
    python bench/search.py --clip-retrieval-python /path/venv/bin/python   # also autofaiss (numpy<2 venv)
    python bench/search.py --n 20000 --images 2000           # quicker

1. Random vectors (the hardest case for approximate search: no cluster structure). Build time, index memory,
   RSS after opening, queries/s one query at a time, recall@10 against numpy exact search; clipctl and numpy
   queries alternate in rounds. Optionally autofaiss (what `clip-retrieval index` runs) with clip-retrieval's
   defaults (max_index_memory_usage 4G, current_memory_available 16G), in its own Python.
2. Real embeddings: generated shape images embedded by `clipctl embed` (the demo's trained checkpoint with
   --demo-dir, else tiny-ViT-8-64 with random weights), indexed approximately; recall@10 vs numpy for new
   images and for text queries (the other modality).
3. HTTP: `clipctl serve` over index 2 on 127.0.0.1; 20 concurrent clients, a fixed number of text queries;
   p50 / p99 latency, queries/s, errors.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipctl.search import IndexOptions, Searcher, SearchIndex, build_index  # noqa: E402
from clipctl.search.tuning import recall_at_k  # noqa: E402


def machine() -> dict:
    import faiss

    from clipctl.runtime import describe_cpu

    return {
        "cpu": describe_cpu(),  # model, cores, native bf16 (avx512_bf16 / amx_bf16)
        "cores_usable": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
    }


def rss_mib() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def write_parquet(path: Path, vectors: np.ndarray, settings: dict[str, str]) -> Path:
    """Through `clipctl embed`'s own writer, so the file is what users index."""
    import pyarrow as pa

    from clipctl.embed.writer import ParquetStore

    store = ParquetStore(path, settings, "path", pa.string(), chunk_rows=65_536)
    for start in range(0, len(vectors), 65_536):
        chunk = vectors[start : start + 65_536]
        store.add([f"v/{i}" for i in range(start, start + len(chunk))], chunk, {})
    store.finalize()
    return path


def numpy_top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ query
    best = np.argpartition(-scores, k)[:k]
    return best[np.argsort(-scores[best])]


def alternate(vectors: np.ndarray, index: SearchIndex, queries: np.ndarray, k: int, rounds: int = 2) -> dict:
    """Queries one at a time, numpy and clipctl in alternating rounds; returns queries/s and the ids found."""
    times = {"numpy": 0.0, "clipctl": 0.0}
    found = {"numpy": [], "clipctl": []}
    for round_ in range(rounds):
        for name in ("numpy", "clipctl") if round_ % 2 == 0 else ("clipctl", "numpy"):
            started = time.perf_counter()
            if name == "numpy":
                ids = [numpy_top_k(vectors, q, k) for q in queries]
            else:
                ids = [index.search_ids(q, k)[1][0] for q in queries]
            times[name] += time.perf_counter() - started
            if round_ == 0:
                found[name] = np.stack(ids)
    total = rounds * len(queries)
    return {"qps": {n: total / t for n, t in times.items()}, "ids": found}


def random_section(args: argparse.Namespace, work: Path) -> dict:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    settings = {
        "model": "none",
        "pretrained": "",
        "precision": "fp32",
        "normalize": "true",
        "modality": "image",
    }
    parquet = write_parquet(work / "random.parquet", vectors, settings)
    summary = build_index(
        parquet, work / "random-index", IndexOptions(max_index_memory=args.max_index_memory)
    )
    before = rss_mib()
    index = SearchIndex(work / "random-index")
    measured = alternate(vectors, index, queries, 10)
    after = rss_mib()
    truth = measured["ids"]["numpy"]
    result = {
        "vectors": args.n,
        "dim": args.dim,
        "kind": summary.kind,
        "factory": summary.factory,
        "nprobe": summary.nprobe,
        "build_s": round(summary.seconds, 1),
        "index_memory_mib": round(summary.memory_bytes / 2**20, 1),
        "vectors_on_disk_mib": round(summary.vectors_bytes / 2**20, 1),
        "expected_recall": summary.expected_recall,
        "recall_at_10": recall_at_k(measured["ids"]["clipctl"], truth),
        "qps": {k: round(v, 1) for k, v in measured["qps"].items()},
        "rss_anon_growth_mib": round(after["RssAnon"] - before["RssAnon"], 1),
        "rss_file_growth_mib": round(after["RssFile"] - before["RssFile"], 1),
    }
    print(json.dumps({"random": result}), flush=True)
    if args.clip_retrieval_python:
        result["autofaiss"] = autofaiss_section(args, work, vectors, queries, truth)
        print(json.dumps({"autofaiss": result["autofaiss"]}), flush=True)
    return result


AUTOFAISS_SCRIPT = r"""
import json, sys, time
import numpy as np
from autofaiss import build_index
import faiss
work, cores = sys.argv[1], int(sys.argv[2])
started = time.perf_counter()
index, infos = build_index(embeddings=work + "/emb", index_path=work + "/image.index",
    index_infos_path=work + "/image.json", max_index_memory_usage="4G", current_memory_available="16G",
    nb_cores=cores, verbose=40)
build = time.perf_counter() - started
queries = np.load(work + "/queries.npy")
started = time.perf_counter()
ids = [index.search(q[None, :], 10)[1][0].tolist() for q in queries]
seconds = time.perf_counter() - started
print(json.dumps({"build_s": build, "qps": len(queries) / seconds, "ids": ids, "infos": infos}))
"""


def autofaiss_section(args: argparse.Namespace, work: Path, vectors, queries, truth) -> dict:
    folder = work / "autofaiss"
    (folder / "emb").mkdir(parents=True, exist_ok=True)
    np.save(folder / "emb" / "img_emb_0.npy", vectors)
    np.save(folder / "queries.npy", queries)
    command = [args.clip_retrieval_python, "-c", AUTOFAISS_SCRIPT, str(folder), str(os.cpu_count())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    infos = answer["infos"]
    return {
        "index_key": infos.get("index_key"),
        "index_param": infos.get("index_param"),
        "build_s": round(answer["build_s"], 1),
        "index_memory_mib": round(infos.get("size in bytes", 0) / 2**20, 1),
        "recall_at_10": recall_at_k(np.array(answer["ids"]), truth),
        "qps": round(answer["qps"], 1),
    }


def draw_images(folder: Path, count: int, seed: int) -> list[Path]:
    from clipctl.data.synth import class_folders
    from clipctl.data.synth_shapes import draw_scene

    classes = class_folders()
    paths = []
    for i in range(count):
        name, colour, shape = classes[i % len(classes)]
        path = folder / name / f"{seed}_{i:06d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            image, _ = draw_scene(np.random.default_rng([seed, i]), 64, colour, shape)
            image.save(path)
        paths.append(path)
    return paths


def model_for(args: argparse.Namespace, work: Path) -> tuple[str, str]:
    if args.demo_dir:
        report = json.loads((Path(args.demo_dir) / "demo.json").read_text())["report"]
        return report["model"], report["checkpoint"]
    import torch

    import clipctl

    torch.manual_seed(0)
    weights = work / "tiny-ViT-8-64.pt"
    torch.save(clipctl.create_model("tiny-ViT-8-64").state_dict(), weights)
    return "tiny-ViT-8-64", str(weights)


def real_section(args: argparse.Namespace, work: Path) -> tuple[dict, Path]:
    import pyarrow.parquet as pq

    from clipctl.data.synth import TEMPLATES, class_folders
    from clipctl.embed import embed_images
    from clipctl.embed.job import EmbedOptions

    model, weights = model_for(args, work)
    draw_images(work / "images", args.images, seed=0)
    started = time.perf_counter()
    parquet = work / "images.parquet"
    embed_images(work / "images", parquet, EmbedOptions(model=model, pretrained=weights, batch_size=64))
    embed_s = time.perf_counter() - started
    summary = build_index(parquet, work / "images-index", IndexOptions(exact_below=0))
    searcher = Searcher(work / "images-index")
    stored = np.stack(pq.read_table(parquet).column("embedding").to_numpy(zero_copy_only=False))
    prompts = [t.format(c=f"{c} {s}") for t in TEMPLATES for _, c, s in class_folders()]
    new_images = draw_images(work / "queries", 200, seed=1)
    result = {"model": model, "images": args.images, "embed_s": round(embed_s, 1)}
    for name, queries in (
        ("text", searcher.encoder.texts(prompts)),
        ("image", searcher.encoder.images(new_images)),
    ):
        measured = alternate(stored, searcher.index, queries, 10)
        result[f"{name}_queries"] = {
            "count": len(queries),
            "recall_at_10": recall_at_k(measured["ids"]["clipctl"], measured["ids"]["numpy"]),
            "qps": {k: round(v, 1) for k, v in measured["qps"].items()},
        }
    result.update(
        factory=summary.factory,
        nprobe=summary.nprobe,
        expected_recall=summary.expected_recall,
        build_s=round(summary.seconds, 1),
        index_memory_mib=round(summary.memory_bytes / 2**20, 2),
    )
    return result, work / "images-index"


def http_section(index_dir: Path, clients: int, queries: int) -> dict:
    from clipctl.search.loadtest import run_load
    from clipctl.search.server import running_server
    from clipctl.search.service import SearchService

    with running_server(SearchService([index_dir])) as base:
        run_load(base, clients=clients, queries=clients)  # warm-up: every client's connection, the model
        report = run_load(base, clients=clients, queries=queries)
    return {
        "clients": report.clients,
        "queries": report.completed,
        "errors": len(report.errors),
        "p50_ms": round(report.p50_ms, 1),
        "p99_ms": round(report.p99_ms, 1),
        "qps": round(report.qps, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="random vectors")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--max-index-memory", default="4G")
    parser.add_argument("--images", type=int, default=20_000, help="generated images to embed (0: skip)")
    parser.add_argument("--demo-dir", help="a finished `clipctl demo` folder: use its trained model")
    parser.add_argument(
        "--clip-retrieval-python", help="a Python with autofaiss (numpy<2) to compare against"
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--http-queries", type=int, default=400)
    parser.add_argument("--work-dir", help="keep generated data here (default: a temporary folder)")
    parser.add_argument("--out", help="also write the results as JSON")
    args = parser.parse_args()

    results: dict = {"machine": machine()}
    print(json.dumps(results["machine"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="clipctl-bench-search-") as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.n:
            results["random"] = random_section(args, work)
        if args.images:
            results["real"], index_dir = real_section(args, work)
            print(json.dumps({"real": results["real"]}), flush=True)
            results["http"] = http_section(index_dir, args.clients, args.http_queries)
            print(json.dumps({"http": results["http"]}), flush=True)
    results["load_average_after"] = os.getloadavg()
    report(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


def report(results: dict) -> None:
    print("\n== summary ==")
    m = results["machine"]
    print(f"CPU {m['cpu']}; {m['cores_usable']} usable; load {m['load_average']}")
    if "random" in results:
        r = results["random"]
        ratio = r["qps"]["clipctl"] / r["qps"]["numpy"]
        print(
            f"random {r['vectors']:,}x{r['dim']}: {r['factory'] or 'exact'} nprobe {r['nprobe']}, build {r['build_s']} s, "
            f"index {r['index_memory_mib']} MiB (+{r['vectors_on_disk_mib']} MiB vectors on disk), recall@10 "
            f"{r['recall_at_10']:.3f} (expected {r['expected_recall']}), {r['qps']['clipctl']} q/s vs numpy exact "
            f"{r['qps']['numpy']} q/s ({ratio:.2f}x); RSS anon +{r['rss_anon_growth_mib']} MiB"
        )
        if "autofaiss" in r:
            print(f"autofaiss (clip-retrieval index) on the same vectors: {r['autofaiss']}")
    if "real" in results:
        r = results["real"]
        for kind in ("text", "image"):
            q = r[f"{kind}_queries"]
            print(
                f"real ({r['model']}, {r['images']:,} images): {kind} queries recall@10 {q['recall_at_10']:.3f}, "
                f"{q['qps']['clipctl']} q/s vs numpy {q['qps']['numpy']} q/s"
            )
        print(
            f"  {r['factory']} nprobe {r['nprobe']}, build {r['build_s']} s, index {r['index_memory_mib']} MiB"
        )
    if "http" in results:
        h = results["http"]
        print(
            f"HTTP: {h['clients']} clients, {h['queries']} text queries: p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms, "
            f"{h['qps']} q/s, {h['errors']} errors"
        )


if __name__ == "__main__":
    main()
