"""The console of a serving host on Aerospike that has no repo files (`registry: online`), and a store outage."""

from __future__ import annotations

import re
import time

import httpx

from tests.conftest import build_served_repo, stale_generated_views
from tests.server.conftest import start


def test_a_host_serving_the_published_registry_from_aerospike(tmp_path):
    from fsplug.testing.aerospike_server import AerospikeTestServer

    with AerospikeTestServer(namespaces=["test"]) as aero:
        yaml = (f"project: console_as\nregistry: data/registry.json\nonline_store:\n  type: aerospike\n"
                f"  hosts: ['{aero.address}']\n  namespace: test\n  read_total_timeout_ms: 200\n"
                "  read_socket_timeout_ms: 200\n  max_retries: 0\n")
        build_served_repo(tmp_path / "repo", yaml, n_drivers=30, days=2)
        host = tmp_path / "host"
        host.mkdir()
        (host / "feature_store.yaml").write_text(yaml.replace("registry: data/registry.json", "registry: online"))
        srv = start(host, "--registry-poll", "0")
        try:
            overview = httpx.get(srv.url + "/ui/").text
            assert f"<code>{aero.address} (namespace test)</code>" in overview
            applied = re.search(r"registry applied</th><td>([^<]+)</td>", overview)
            assert applied is not None and applied.group(1).endswith("ago)")  # from the published record
            fresh = httpx.get(srv.url + "/ui/freshness").text
            # both views were materialized just now: fresh unless the data has no event within the ttl
            assert fresh.count('class="badge b-fresh"') == 2 - len(stale_generated_views(tmp_path / "repo"))
            look = httpx.get(srv.url + "/ui/lookup?service=decline_model_v1&driver_id=1001&pickup_distance_km=1"
                                       "&hour_of_day=8").text
            assert 'data-status="PRESENT"' in look
            aero.stop()  # the store down: pages that read it say so, without a traceback
            down = httpx.get(srv.url + "/ui/freshness")
            assert down.status_code == 503 and "Unavailable" in down.text and "Traceback" not in down.text
            assert httpx.get(srv.url + "/ui/entities").status_code == 200  # the registry alone needs no store
            aero.start(keep_data=True)
            deadline = time.monotonic() + 15
            while httpx.get(srv.url + "/ui/freshness").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert httpx.get(srv.url + "/ui/freshness").status_code == 200
        finally:
            srv.stop()
