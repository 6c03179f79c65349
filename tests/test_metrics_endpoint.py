"""Prometheus: the exporter's metrics, and GET /metrics on the launched app behind --auth."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from synth import photo_like

from sam_core.monitor.metrics import SOURCES, MetricsExporter
from sam_core.monitor.synthetic import synthetic_records, write_log
from sam_core.runlog import RunRecord

ROOT = Path(__file__).resolve().parents[1]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def test_exporter_counts_what_it_observes_and_keeps_labels_bounded():
    a, b = MetricsExporter(), MetricsExporter()  # two servers in one process: separate registries
    recs = [
        RunRecord(source="ui", decode_ms=40.0, encode_ms=900.0, cache_hit=False, score=0.93, area_fraction=0.2,
                  mask_empty=False, mask_full=False, image_name="secret.png", image_hash="ab" * 20),
        RunRecord(source="api", decode_ms=3000.0, encode_ms=0.2, cache_hit=True, score=0.41, area_fraction=1.0,
                  mask_empty=False, mask_full=True),
        RunRecord(source="my-script", decode_ms=10.0, cache_hit=True, score=0.0, area_fraction=0.0,
                  mask_empty=True, mask_full=False, extra={"preprocess": "clahe2.5x8"}),
    ]
    for r in recs:
        a.observe(r)
    text = a.exposition()[0].decode()
    assert value(text, "sam_segmentations_total", source="ui") == 1
    assert value(text, "sam_segmentations_total", source="api") == 1
    assert value(text, "sam_segmentations_total", source="other") == 1  # unknown sources fold into one label
    assert value(text, "sam_decode_seconds_count") == 3
    assert value(text, "sam_decode_seconds_sum") == pytest.approx(3.05)
    assert value(text, "sam_decode_seconds_bucket", le="0.05") == 2
    assert value(text, "sam_encode_seconds_count") == 1  # only the run that encoded
    assert value(text, "sam_encode_seconds_sum") == pytest.approx(0.9)
    assert value(text, "sam_embedding_cache_hits_total") == 2
    assert value(text, "sam_embedding_cache_misses_total") == 1
    assert value(text, "sam_mask_score_count") == 3 and value(text, "sam_mask_score_bucket", le="0.5") == 2
    assert value(text, "sam_mask_area_fraction_bucket", le="0.0") == 1
    assert value(text, "sam_masks_empty_total") == 1 and value(text, "sam_masks_full_total") == 1
    assert "secret" not in text and "abab" not in text
    # the encoder's pre-processing: two bounded values, whatever the clip limit
    assert value(text, "sam_segmentations_preprocessed_total", preprocess="none") == 2
    assert value(text, "sam_segmentations_preprocessed_total", preprocess="clahe") == 1
    labels = {k for (_, ls) in samples(text) for k, _ in ls}
    assert labels <= {"source", "le", "rule", "preprocess"}
    assert {v for (n, ls) in samples(text) for k, v in ls if k == "preprocess"} == {"none", "clahe"}
    assert {v for (n, ls) in samples(text) for k, v in ls if k == "source"} == {*SOURCES, "other"}
    assert value(b.exposition()[0].decode(), "sam_decode_seconds_count") == 0  # b saw nothing


def test_alert_gauge_follows_the_log(tmp_path):
    now = time.time()
    ex = MetricsExporter(tmp_path, alert_interval_s=0.0)
    text = ex.exposition()[0].decode()  # no log yet: every rule reads 0
    assert value(text, "sam_alerts_firing", rule="decode_p95") == 0
    write_log(tmp_path, synthetic_records(100, start=now - 6000, step_s=60, decode_ms=3000.0))
    text = ex.exposition()[0].decode()
    assert value(text, "sam_alerts_firing", rule="decode_p95") == 1
    assert value(text, "sam_alerts_firing", rule="mean_score") == 0
    rules = {dict(ls)["rule"] for (n, ls) in samples(text) if n == "sam_alerts_firing"}
    assert rules == {r.name for r in ex.rules.rules}


def test_alert_gauge_is_cached(tmp_path):
    ex = MetricsExporter(tmp_path, alert_interval_s=3600.0)
    assert ex.alert_states()["decode_p95"] is False
    write_log(tmp_path, synthetic_records(100, start=time.time() - 6000, step_s=60, decode_ms=3000.0))
    assert ex.alert_states()["decode_p95"] is False  # not re-read within the interval


# --------------------------------------------------------------------------- the launched app


def get(url: str, headers: dict[str, str] | None = None, opener=None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with (opener.open(req, timeout=30) if opener else urllib.request.urlopen(req, timeout=30)) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    from server import run_server

    with run_server(tmp_path_factory.mktemp("metrics-app"), "--auth", "alice:s3cret") as srv:
        yield srv


def test_metrics_endpoint_counts_segment_requests_behind_auth(auth_server, tmp_path):
    from gradio_client import Client, handle_file

    url = auth_server.url + "metrics"
    status, body = get(url)
    assert status == 401 and "s3cret" not in body
    assert get(url, {"Authorization": "Basic " + base64.b64encode(b"alice:wrong").decode()})[0] == 401
    basic = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
    status, before = get(url, basic)
    assert status == 200 and value(before, "sam_segmentations_total", source="api") == 0

    images = []
    for i in range(3):
        images.append(tmp_path / f"img{i}.png")
        Image.fromarray(photo_like(48, 64, seed=i)).save(images[-1])
    client = Client(auth_server.url, auth=("alice", "s3cret"), verbose=False)
    hits = 0
    scores = []
    n = 5
    for i in range(n):
        summary, _ = client.predict(handle_file(str(images[i % 3])), json.dumps({"points": [[30, 20, 1]]}), True,
                                    api_name="/segment")
        hits += bool(summary["timings"]["cache_hit"])
        scores.append(summary["candidates"][summary["best_index"]]["score"])

    # Gradio's own login (its session cookie) works too
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = urllib.request.Request(auth_server.url + "login", data=b"username=alice&password=s3cret", method="POST")
    with opener.open(login, timeout=30) as resp:
        assert resp.status == 200
    status, text = get(url, opener=opener)
    assert status == 200
    assert value(text, "sam_segmentations_total", source="api") == n
    assert value(text, "sam_segmentations_total", source="ui") == 0
    assert value(text, "sam_decode_seconds_count") == n
    assert value(text, "sam_embedding_cache_hits_total") == hits == 2  # images 0 and 1 came back once each
    assert value(text, "sam_encode_seconds_count") == n - hits
    assert value(text, "sam_mask_score_count") == n
    assert value(text, "sam_mask_score_sum") == pytest.approx(sum(scores), abs=1e-4)
    assert value(text, "sam_mask_area_fraction_count") == n
    assert {dict(ls)["rule"] for (name, ls) in samples(text) if name == "sam_alerts_firing"} >= {"decode_p95",
                                                                                               "drift_brightness"}
    assert "img0" not in text
    # the log agrees
    from sam_core.runlog import RunLog

    assert [r["source"] for r in RunLog(auth_server.outputs / "logs").records()] == ["api"] * n


def test_metrics_without_auth_is_open_like_the_app(tmp_path):
    from server import run_server

    with run_server(tmp_path) as srv:
        status, text = get(srv.url + "metrics")
    assert status == 200 and value(text, "sam_segmentations_total", source="api") == 0
    assert np.isfinite(value(text, "sam_decode_seconds_count"))
