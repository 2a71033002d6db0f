"""The benchmark harness itself (bench/): the ratios are only worth something if the mixed
workload is what the issue asks for and the ceiling answers exactly the service's bytes."""

from __future__ import annotations

import random
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import ceiling_app  # noqa: E402
import run as bench  # noqa: E402

import db  # noqa: E402
from app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('bench') / 'bench.db'}"
    return url, bench.seed_database(url, 300, n_agents=20)


def test_the_mixed_cycle_is_90_percent_reads_over_400_urls_and_10_percent_writes(seeded):
    _url, info = seeded
    mix = bench.build_mix(info, random.Random(7))
    kinds = Counter(request["k"] for request in mix.sequence)
    assert len(mix.sequence) == 1000 and kinds["read"] == 900
    assert (kinds["create"], kinds["update"], kinds["agents"]) == (34, 33, 33)
    assert len(mix.reads) == 400 == len({r["p"] for r in mix.sequence if r["k"] == "read"})
    # Writes leave the `get` department and the first pages alone (their bodies stay comparable).
    first_pages = set(info.visible_sorted[:100])
    written = {w["p"].split("/department/")[1].split("/")[0] for w in mix.writes if w["k"] != "create"}
    assert info.get_id not in written and not written & first_pages


def test_every_read_of_the_mix_answers_200_from_the_service(seeded):
    url, info = seeded
    mix = bench.build_mix(info, random.Random(7))
    app = create_app({"DATABASE_URL": url, "TESTING": True})
    try:
        client = app.test_client()
        login = client.post("/api/v1/login", json={"user": bench.ADMIN_USER, "password": bench.ADMIN_PASS}).json["data"]
        headers = {"X-User-Id": login["userId"], "X-Auth-Token": login["authToken"]}
        statuses = Counter(client.get(target, headers=headers).status_code for target in mix.reads)
        assert statuses == Counter({200: len(mix.reads)})
    finally:
        db.dispose(app)


def test_the_ceiling_answers_the_captured_bytes_and_404_for_anything_else():
    body = b'{"departments":[],"count":0,"offset":0,"total":0,"success":true}'
    app = ceiling_app.create_app({"GET /api/v1/livechat/department?count=50": (200, "application/json", body)})
    client = app.test_client()
    response = client.get("/api/v1/livechat/department?count=50")
    assert (response.status_code, response.content_type, response.get_data()) == (200, "application/json", body)
    assert client.get("/api/v1/livechat/department?count=51").status_code == 404
    assert client.post("/api/v1/livechat/department?count=50").status_code == 404


@pytest.mark.e2e
def test_the_cold_path_mode_runs_and_prints_its_ratios(tmp_path, capsys, monkeypatch):
    """`bench/run.py --cold`: the service with READ_CACHE=off against the ceiling (short rounds)."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (`apt-get install wrk`, as .ci/run does)")
    monkeypatch.setenv("READ_CACHE", "on")  # main() turns it off; monkeypatch restores it afterwards
    argv = ["--cold", "--rounds", "3", "--duration", "0.5", "--warmup", "0", "--workloads", "get,list",
            "--departments", "400", "--out", str(tmp_path)]  # the mix needs 360 distinct ids
    assert bench.main(argv) == 0
    output = capsys.readouterr().out
    assert "read caches: off" in output
    last = output.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio_list=\d\.\d+ ratio_get=\d\.\d+", last), last
    assert list(tmp_path.glob("results-ratios-sqlite-cold-*.json"))
