"""clip-retrieval's back-end endpoints, so its front end (and `ClipClient`) can talk to `clipctl serve`.

- ``GET /indices-list`` -> the index names.
- ``POST /knn-service`` with ``text`` | ``image`` (base64) | ``embedding_input`` | ``image_url``, ``modality``,
  ``num_images``, ``num_result_ids``, ``indice_name``, ``deduplicate`` -> a list, best first, of
  ``{"id", "similarity"}``; the first ``num_images`` also carry the row's metadata: ``image_path``, ``caption``
  and ``url`` (this server's thumbnail of the row).
- ``POST /metadata`` with ``ids`` and ``indice_name`` -> ``[{"id", "metadata": {...}}]``.

Differences: ``image_url`` is accepted only for this server's own image and thumbnail links (the front end's
"search with this image" button sends those); clipctl never downloads. ``num_result_ids`` is capped at
``--max-k`` instead of refused, because the front end always asks for 3,000. ``use_mclip``,
``use_safety_model``, ``use_violence_detector`` and the aesthetic fields are accepted and ignored (there are no
such models here); metadata images come as ``url`` links, never inlined as base64.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from clipctl.search.index import Hit
from clipctl.search.service import Query, RequestError, SearchService, decode_base64_image

DEDUP_SIMILARITY = 0.94  # clip-retrieval's threshold for "the same image"
_OWN_LINK = re.compile(r"^/(?:thumb|image)/(?P<name>[^/]+)/(?P<row>[0-9]+)$")


def knn_query(service: SearchService, payload: dict[str, Any], host: str) -> tuple[str, Query]:
    """The index name and the query of a ``/knn-service`` request."""
    name, index = service.index(payload.get("indice_name") or None)
    modality = payload.get("modality") or index.modality
    if modality != index.modality:
        raise RequestError(
            400, f"index {name!r} holds {index.modality} embeddings; modality {modality!r} is not there"
        )
    text = payload.get("text")
    if text:  # the front end sends text "" with an image query
        return name, service.parse_query({"text": text})
    if payload.get("image"):
        return name, Query("image", decode_base64_image(payload["image"]))
    if payload.get("embedding_input") is not None:
        return name, service.parse_query({"vector": payload["embedding_input"]})
    if payload.get("image_url"):
        return name, _own_link_query(service, name, str(payload["image_url"]), host)
    raise RequestError(400, "give one of text, image, image_url or embedding_input")


def _own_link_query(service: SearchService, name: str, url: str, host: str) -> Query:
    parts = urlsplit(url)
    match = _OWN_LINK.match(parts.path)
    if parts.netloc not in ("", host) or match is None or match["name"] not in service.indexes:
        raise RequestError(
            400, "image_url: clipctl serve never downloads; send the image itself as base64 in image"
        )
    return Query("id", int(match["row"]))


def knn_response(
    service: SearchService, name: str, query: Query, payload: dict[str, Any], base_url: str
) -> list[dict[str, Any]]:
    num_images = service.check_k(payload.get("num_images"), what="num_images")
    num_ids = payload.get("num_result_ids")
    wanted = (
        num_images if num_ids in (None, "") else max(num_images, min(_int(num_ids), service.options.max_k))
    )
    name, hits, _ = service.search(name, query, wanted)
    if payload.get("deduplicate"):
        hits = _deduplicate(service, name, hits)
    results = []
    for position, hit in enumerate(hits):
        entry = {"id": hit.id, "similarity": hit.score}
        if position < num_images:
            entry.update(_metadata(name, hit, base_url))
        results.append(entry)
    return results


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RequestError(400, f"num_result_ids must be a whole number, got {value!r}") from None


def _deduplicate(service: SearchService, name: str, hits: list[Hit]) -> list[Hit]:
    """Drop each result whose vector is as similar as clip-retrieval's threshold to one kept before it."""
    if len(hits) < 2:
        return hits
    index = service.indexes[name]
    vectors = np.asarray(index.vectors[np.array([h.id for h in hits])], dtype=np.float32)
    similar = vectors @ vectors.T >= DEDUP_SIMILARITY
    kept: list[int] = []
    for i in range(len(hits)):
        if not any(similar[i, j] for j in kept):
            kept.append(i)
    return [hits[i] for i in kept]


def _metadata(name: str, hit: Hit, base_url: str) -> dict[str, Any]:
    meta: dict[str, Any] = {k: v for k, v in hit.fields.items() if isinstance(v, (str, int, float, bool))}
    meta["image_path"] = hit.key
    if hit.caption is not None:
        meta["caption"] = hit.caption
    if hit.file:
        meta["url"] = f"{base_url.rstrip('/')}/thumb/{name}/{hit.id}"
    return meta


def metadata_response(service: SearchService, payload: dict[str, Any], base_url: str) -> list[dict[str, Any]]:
    name, index = service.index(payload.get("indice_name") or None)
    ids = payload.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise RequestError(400, "ids must be a list of row numbers")
    if len(ids) > service.options.max_k:
        raise RequestError(400, f"at most {service.options.max_k} ids at a time, got {len(ids)}")
    known = [i for i in ids if 0 <= i < index.count]
    hits = index.hits(np.zeros(len(known), dtype=np.float32), np.asarray(known, dtype=np.int64))
    return [{"id": hit.id, "metadata": _metadata(name, hit, base_url)} for hit in hits]
