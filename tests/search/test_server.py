"""`clipctl serve`'s HTTP API: queries of every kind, caps answered with 4xx and a message, oversized uploads
413, and files sent only for indexed rows (path tricks and swapped symlinks answer 404)."""

from __future__ import annotations

import base64
import io
import os
import shutil

import pytest
from PIL import Image
from starlette.testclient import TestClient

from clipctl.search import SearchIndex
from clipctl.search.server import create_app
from clipctl.search.service import SearchService, ServeOptions
from tests.search.live_server import live_server, raw_get
from tests.search.search_data import indexed_shapes


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    _, paths = indexed_shapes(root, per_class=3)
    service = SearchService([root / "idx"], ServeOptions(max_k=50, max_upload_bytes=200_000))
    return root, paths, service


@pytest.fixture(scope="module")
def client(served):
    return TestClient(create_app(served[2]))


def _png(path) -> bytes:
    return path.read_bytes()


def test_page_and_index_list(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>clipctl search</title>" in page.text
    assert (
        "script-src" not in page.headers["content-security-policy"]
    )  # default-src 'self': no inline scripts
    assert client.get("/app.js").headers["content-type"].startswith("text/javascript")
    (entry,) = client.get("/api/indices").json()
    assert (entry["name"], entry["count"], entry["kind"], entry["max_k"]) == ("idx", 24, "exact", 50)
    assert entry["queries"] == ["text", "image", "vector", "id"]


def test_every_kind_of_query(client, served):
    root, paths, _ = served
    text = client.get("/api/search", params={"text": "a red circle", "k": 5}).json()
    assert (text["query"], text["k"], len(text["results"])) == ("text", 5, 5)
    first = text["results"][0]
    assert set(first) >= {"rank", "id", "score", "key", "thumbnail", "image"} and "file" not in first

    upload = client.post(
        "/api/search", files={"image": ("q.png", _png(paths[4]), "image/png")}, data={"k": "2"}
    )
    assert upload.status_code == 200, upload.text
    best = upload.json()["results"][0]
    assert best["key"] == paths[4].relative_to(root / "images").as_posix() and best["score"] > 0.999

    encoded = "data:image/png;base64," + base64.b64encode(_png(paths[4])).decode()
    as_json = client.post("/api/search", json={"image": encoded, "k": 1}).json()
    assert as_json["results"][0]["id"] == best["id"]
    by_id = client.post("/api/search", json={"id": best["id"], "k": 1}).json()
    assert by_id["results"][0]["id"] == best["id"]
    vector = served[2].indexes["idx"].vector(best["id"]).tolist()
    assert (
        client.post("/api/search", json={"vector": vector, "k": 1}).json()["results"][0]["id"] == best["id"]
    )


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"params": {"text": "x", "k": 0}}, 400, "k must be between 1 and 50"),
        ({"params": {"text": "x", "k": 51}}, 400, "k must be between 1 and 50"),
        ({"params": {"text": "x", "k": "many"}}, 400, "k must be a whole number"),
        ({"params": {"text": "x", "index": "nope"}}, 404, "no index named 'nope'"),
        ({"params": {}}, 400, "give exactly one of text, image, vector or id (got none)"),
        ({"params": {"text": "x", "id": 1}}, 400, "(got id, text)"),
        ({"params": {"text": "x" * 1001}}, 400, "the limit is 1000"),
        ({"params": {"id": 99999}}, 404, "row 99999 is not in index 'idx'"),
        ({"json": {"vector": [1.0, 2.0]}}, 400, "a query vector has 2 values; the index holds 128"),
        ({"json": {"vector": [0.0] * 128}}, 400, "all zeros"),
        ({"json": {"image": "%%%"}}, 400, "not valid base64"),
        ({"json": {"image": base64.b64encode(b"not an image").decode()}}, 400, "not a readable image"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        (
            {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
            400,
            "must be a JSON object",
        ),
    ],
)
def test_bad_queries_get_a_4xx_with_a_message(client, request_kwargs, status, message):
    method = client.get if "params" in request_kwargs else client.post
    response = method("/api/search", **request_kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_oversized_uploads_answer_413(client, served):
    big = os.urandom(300_000)
    response = client.post("/api/search", files={"image": ("big.png", big, "image/png")})
    assert response.status_code == 413 and "limit is 200,000" in response.json()["error"]

    def chunks():  # no Content-Length: the server must count what arrives
        for _ in range(30):
            yield b"x" * 10_000

    streamed = client.post("/api/search", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "over the 200,000-byte limit" in streamed.json()["error"]

    bomb = io.BytesIO()
    Image.new("L", (8000, 8000)).save(bomb, format="PNG", optimize=True)  # tiny file, 64 megapixels
    assert len(bomb.getvalue()) < 200_000
    response = client.post("/api/search", files={"image": ("bomb.png", bomb.getvalue(), "image/png")})
    assert response.status_code == 413 and "pixels" in response.json()["error"]


def test_thumbnails_and_images_of_indexed_rows(client, served):
    root, paths, _ = served
    hit = client.get("/api/search", params={"text": "a shape", "k": 1}).json()["results"][0]
    thumb = client.get(hit["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 256
    full = client.get(hit["image"])
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    assert full.content == (root / "images" / hit["key"]).read_bytes()


TRAVERSALS = [
    "/image/idx/../../../../etc/passwd",
    "/thumb/idx/..%2f..%2f..%2fetc%2fpasswd",
    "/image/idx/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/image/idx/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/image/idx/%2fetc%2fpasswd",
    "/image/idx//etc/passwd",
    "/image//etc/passwd",
    "/image/idx/-1",
    "/image/idx/24",
    "/image/..%2fidx/0",
    "/etc/passwd",
    "/../../etc/passwd",
    "/static/../../../etc/passwd",
    "/app.js/../../etc/passwd",
    "/image/idx/0/../../../../etc/passwd",
    "/image/idx/0%00.png",
]


def test_path_traversal_answers_404(served):
    with live_server(served[2]) as base:
        assert raw_get(base, "/image/idx/0")[0] == 200
        for target in TRAVERSALS:
            status, body = raw_get(base, target)
            assert status == 404, target
            assert b"root:" not in body


def test_files_swapped_for_symlinks_out_of_the_index_answer_404(tmp_path):
    images = tmp_path / "images"
    _, paths = indexed_shapes(tmp_path, per_class=2, classes=2)
    client = TestClient(create_app(SearchService([tmp_path / "idx"])))
    assert all(client.get(f"/image/idx/{i}").status_code == 200 for i in range(4))

    secret = tmp_path / "secret.png"  # an image, even: only the indexed file itself may be sent
    Image.new("RGB", (8, 8), "red").save(secret)
    paths[0].unlink()
    paths[0].symlink_to(secret)
    moved = tmp_path / "moved"
    shutil.move(str(images / paths[2].parent.name), moved)  # a folder on the way swapped for a symlink
    (images / paths[2].parent.name).symlink_to(moved)
    paths[1].write_text("root:x:0:0:not an image any more")
    keys = SearchIndex(tmp_path / "idx").rows.column("path").to_pylist()
    for path in paths:  # the other file of the swapped folder is refused too: its real path changed
        row = keys.index(path.relative_to(images).as_posix())
        assert client.get(f"/image/idx/{row}").status_code == 404, path
        assert client.get(f"/thumb/idx/{row}").status_code == 404, path


def test_bounded_load_of_20_concurrent_clients_has_no_errors(served):
    from clipctl.search.loadtest import run_load

    with live_server(served[2]) as base:
        report = run_load(base, clients=20, queries=200, k=10)
    print(f"\nload test: {report}")
    assert report.errors == [] and report.completed == 200
    assert report.p50_ms > 0 and report.p99_ms >= report.p50_ms and report.qps > 0
