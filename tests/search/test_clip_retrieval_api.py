"""clip-retrieval's back-end endpoints on `clipctl serve`: the requests its front end and `ClipClient` send
(copied field for field from their sources' request shapes) get answers of the shape they read."""

from __future__ import annotations

import base64
import json

import pytest
from starlette.testclient import TestClient

from clipctl.search.server import create_app
from clipctl.search.service import SearchService, ServeOptions
from tests.search.search_data import indexed_shapes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    _, paths = indexed_shapes(root, per_class=3, index="shapes")
    service = SearchService(
        [root / "shapes"], ServeOptions(max_k=20, allow_origins=("http://front.example",))
    )
    return TestClient(create_app(service), base_url="http://testserver"), paths, service


def _front_end_request(**overrides):
    """What clip-retrieval's front end posts (clip-service.js): text/plain JSON, every field present."""
    body = {
        "text": "a red circle",
        "image": None,
        "image_url": None,
        "embedding_input": None,
        "modality": "image",
        "num_images": 5,
        "indice_name": "shapes",
        "num_result_ids": 3000,
        "use_mclip": False,
        "deduplicate": True,
        "use_safety_model": True,
        "use_violence_detector": True,
        "aesthetic_score": "",
        "aesthetic_weight": "0.5",
    }
    return json.dumps({**body, **overrides})


def test_indices_list(setup):
    client = setup[0]
    assert client.get("/indices-list").json() == ["shapes"]


def test_knn_service_answers_the_front_ends_text_query(setup):
    client = setup[0]
    response = client.post(
        "/knn-service", content=_front_end_request(), headers={"content-type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    results = response.json()
    assert 5 < len(results) <= 20  # num_result_ids 3000 is capped at --max-k, not refused
    similarities = [r["similarity"] for r in results]
    assert similarities == sorted(similarities, reverse=True)
    for entry in results[:5]:  # the first num_images carry metadata, the rest ids for /metadata
        assert set(entry) >= {"id", "similarity", "url", "image_path"}
        assert entry["url"].startswith("http://testserver/thumb/shapes/")
        assert client.get(entry["url"]).headers["content-type"] == "image/jpeg"
    assert set(results[5]) == {"id", "similarity"}
    ids = [r["id"] for r in results]
    assert len(set(ids)) == len(ids)


def test_knn_service_image_embedding_and_own_url_queries(setup):
    client, paths, service = setup
    encoded = base64.b64encode(paths[2].read_bytes()).decode()
    image = client.post("/knn-service", content=_front_end_request(text="", image=encoded, num_result_ids=1))
    best = image.json()[0]
    assert best["image_path"].endswith(paths[2].name) and best["similarity"] > 0.999
    again = client.post(
        "/knn-service", content=_front_end_request(text=None, image_url=best["url"], num_images=1)
    )
    assert again.json()[0]["id"] == best["id"]  # the front end's "search with this image" button
    # ClipClient's embedding query
    embedding = service.indexes["shapes"].vector(best["id"]).tolist()
    by_vector = client.post("/knn-service", content=_front_end_request(text=None, embedding_input=embedding))
    assert by_vector.json()[0]["id"] == best["id"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_url": "http://elsewhere.example/cat.jpg", "text": None}, "never downloads"),
        ({"modality": "text"}, "holds image embeddings"),
        ({"indice_name": "laion5B"}, "no index named 'laion5B'"),
        ({"num_images": 500}, "num_images must be between 1 and 20"),
        ({"text": None}, "give one of text, image, image_url or embedding_input"),
    ],
)
def test_knn_service_refusals(setup, overrides, message):
    client = setup[0]
    response = client.post("/knn-service", content=_front_end_request(**overrides))
    assert 400 <= response.status_code < 500 and message in response.json()["error"]


def test_metadata_endpoint(setup):
    client = setup[0]
    answer = client.post(
        "/metadata", content=json.dumps({"ids": [0, 3, 999], "indice_name": "shapes"})
    ).json()
    assert [entry["id"] for entry in answer] == [0, 3]  # unknown ids are left out
    assert set(answer[0]["metadata"]) >= {"image_path", "url"}
    bad = client.post("/metadata", content=json.dumps({"ids": "0", "indice_name": "shapes"}))
    assert bad.status_code == 400


def test_cors_only_for_allowed_origins(setup):
    client = setup[0]
    allowed = client.get("/indices-list", headers={"Origin": "http://front.example"})
    assert allowed.headers["access-control-allow-origin"] == "http://front.example"
    other = client.get("/indices-list", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
