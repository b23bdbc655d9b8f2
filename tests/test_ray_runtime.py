"""The Ray runtime on a real three-node Ray cluster on this machine (tests/_ray_cluster.py).

Nodes: the head (1 CPU), `us-east` (1 CPU, one fake GPU labelled H100) and `eu-west` (1 CPU). The
shared acceptance tests also run on this cluster through the `runtime_platform` fixture.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shipyard.exceptions import ContainerError
from shipyard.runtime._ray import actor_options, check_feasible, largest_cpus
from shipyard.spec import Resources

from ._ray_cluster import RayCluster
from .conftest import SHIPYARD, Platform, free_port

WHERE_AM_I = '''
import os
import shipyard

app = shipyard.App("{name}")


@app.function({options})
@shipyard.fastapi_endpoint()
def where():
    print("where was called", flush=True)
    return {{"pid": os.getpid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}}
'''


def node_rows(platform: Platform) -> list[dict[str, Any]]:
    return json.loads(platform.cli("nodes", "--json").stdout)  # type: ignore[no-any-return]


def placement(platform: Platform, app_name: str) -> dict[str, str]:
    """Container id → node id of the running containers of the app (as its platform log names them)."""
    app = next(a for a in platform.apps() if a["name"] == app_name)
    platform_log = platform.home / "logs" / str(app["app_id"]) / "platform.log"
    own = set(re.findall(r"starting container (ctr-\w+)", platform_log.read_text()))
    return {
        cid: row["node_id"]
        for row in node_rows(platform)
        if row["alive"]
        for cid in row["containers"]
        if cid in own
    }


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def deploy(ray_platform: Platform, app_file: Any) -> Iterator[Callable[..., str]]:
    """Deploy a `where` web function with the given `@app.function` options; stop the apps afterwards."""
    names: list[str] = []

    def run(name: str, options: str = "") -> str:
        names.append(name)
        return ray_platform.deploy(app_file(WHERE_AM_I.format(name=name, options=options)))["where"]

    yield run
    for name in names:
        ray_platform.cli("app", "stop", name, check=False)


def test_web_app_answers_through_the_proxy(ray_platform: Platform, deploy: Any) -> None:
    url = deploy("ray-hello")
    with ray_platform.client(url, timeout=120) as client:
        response = client.get("/")
    assert response.status_code == 200, response.text
    # The container's output reaches the control plane's logs from the node (pulled every second).
    wait_for(lambda: "where was called" in ray_platform.cli("app", "logs", "ray-hello").stdout,
             "the container's log line", timeout=10)


def test_containers_spread_over_nodes(ray_platform: Platform, ray_cluster: RayCluster, deploy: Any) -> None:
    # 0.6 CPU each: no node (1 CPU) can hold two, so Ray must use all three.
    deploy("ray-spread", "cpu=0.6, min_containers=3, max_containers=3")
    spread = wait_for(lambda: (p := placement(ray_platform, "ray-spread")) and len(p) >= 3 and p,
                      "three containers")
    assert len(set(spread.values())) == 3
    table = ray_platform.cli("nodes").stdout
    assert "eu-west" in table and "H100" in table


def test_region_places_only_on_that_region(ray_platform: Platform, ray_cluster: RayCluster,
                                           deploy: Any) -> None:
    deploy("ray-eu", "region='eu-west', min_containers=2")
    where = wait_for(lambda: (p := placement(ray_platform, "ray-eu")) and len(p) >= 2 and p, "two containers")
    assert set(where.values()) == {ray_cluster.node_ids()["eu-west"]}


def test_region_without_a_node_is_a_clear_error(ray_platform: Platform, app_file: Any) -> None:
    path = app_file(WHERE_AM_I.format(name="ray-ap", options="region='ap-south'"))
    result = ray_platform.cli("deploy", str(path), check=False)
    assert result.returncode != 0
    assert "no Ray node offers region ap-south" in result.stderr + result.stdout
    assert "node regions: eu-west, us-east" in result.stderr + result.stdout


def test_gpu_function_lands_on_the_gpu_node(ray_platform: Platform, ray_cluster: RayCluster,
                                            deploy: Any) -> None:
    url = deploy("ray-gpu", "gpu='H100'")
    with ray_platform.client(url, timeout=120) as client:
        response = client.get("/")
    assert response.status_code == 200, response.text
    assert response.json()["cuda"] == "0"  # Ray's GPU assignment reaches the container
    assert set(placement(ray_platform, "ray-gpu").values()) == {ray_cluster.node_ids()["us-east"]}


@contextlib.contextmanager
def regional_proxy(platform: Platform, region: str) -> Iterator[int]:
    """Run `shipyard proxy --region REGION` against the platform; yield its port."""
    port = free_port()
    proxy = subprocess.Popen(
        [SHIPYARD, "proxy", "--region", region, "--server", platform.url, "--port", str(port)],
        env=platform.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        yield port
    finally:
        proxy.terminate()
        proxy.wait(10)


def test_regional_proxy_serves_its_region(ray_platform: Platform, deploy: Any) -> None:
    eu_url = deploy("ray-eu-proxy", "region='eu-west'")
    other_url = deploy("ray-any-proxy")
    with regional_proxy(ray_platform, "eu-west") as port:
        def through_proxy(url: str) -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": httpx.URL(url).host},
                                 timeout=120)
            except httpx.TransportError:
                return None

        response = wait_for(lambda: through_proxy(eu_url), "the regional proxy")
        assert response.status_code == 200, response.text
        assert response.json()["pid"] > 0
        refused = through_proxy(other_url)
        assert refused is not None and refused.status_code == 404
        assert "region eu-west" in refused.text
        # The path form works too; the proxy registered itself as eu-west's (endpoint URLs point to it).
        label = httpx.URL(eu_url).host.split(".")[0]
        assert httpx.get(f"http://127.0.0.1:{port}/fn/{label}/", timeout=60).status_code == 200
        assert ray_platform.api("GET", "/api/cluster/proxies").json() == {"eu-west": f"http://127.0.0.1:{port}"}


def test_regional_proxy_serves_an_endpoint_of_its_region(ray_platform: Platform) -> None:
    openai = pytest.importorskip("openai")
    pytest.importorskip("llama_cpp.server")
    model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    with regional_proxy(ray_platform, "eu-west") as port:
        proxy_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: ray_platform.api("GET", "/api/cluster/proxies").json().get("eu-west") == proxy_url,
                 "the regional proxy to register")
        # The llama.cpp recipe asks for the threads of the largest node (1 CPU here), so Ray can place it.
        ray_platform.cli("endpoint", "create", "ray-smol", "--model", model, "--routing-region", "eu-west",
                         "--unauthenticated", "--wait", timeout=300)
        try:
            (listed,) = [e for e in json.loads(ray_platform.cli("endpoint", "list", "--json").stdout)
                         if e["name"] == "ray-smol"]
            assert listed["url"].startswith(f"{proxy_url}/fn/") and listed["region"] == "eu-west"
            client = openai.OpenAI(base_url=listed["url"] + "/v1", api_key="unused", max_retries=0,
                                   timeout=120)
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=4)
            assert reply.choices[0].message.content
        finally:
            ray_platform.cli("endpoint", "delete", "ray-smol", check=False)


def test_lost_node_containers_are_replaced(ray_platform: Platform, ray_cluster: RayCluster,
                                           deploy: Any) -> None:
    url = deploy("ray-failover", "region='eu-west', min_containers=1")
    wait_for(lambda: placement(ray_platform, "ray-failover"), "a container on eu-west")
    eu_node = ray_cluster.kill_worker("eu-west")
    try:
        # The function may only run on eu-west: bring a new eu-west node up, as an operator (or KubeRay)
        # replaces a machine; the lost container is reported and replaced on the new node.
        ray_cluster.add_worker("eu-west")
        moved = wait_for(
            lambda: (p := placement(ray_platform, "ray-failover")) and eu_node not in p.values() and p,
            "a replacement container", timeout=120,
        )
        assert set(moved.values()) == {ray_cluster.node_ids()["eu-west"]}
        with ray_platform.client(url, timeout=120) as client:
            assert client.get("/").status_code == 200
        assert "was lost" in ray_platform.cli("app", "logs", "ray-failover").stdout
    finally:
        if "eu-west" not in ray_cluster.workers:
            ray_cluster.add_worker("eu-west")


def test_lost_node_replaced_elsewhere(ray_platform: Platform, ray_cluster: RayCluster, deploy: Any) -> None:
    url = deploy("ray-elsewhere", "cpu=0.6, min_containers=2, max_containers=2")
    before = wait_for(lambda: (p := placement(ray_platform, "ray-elsewhere")) and len(p) >= 2 and p,
                      "two containers")
    victim = next(name for name, node in ray_cluster.node_ids().items() if node in before.values())
    lost = ray_cluster.kill_worker(victim)
    try:
        after = wait_for(
            lambda: (p := placement(ray_platform, "ray-elsewhere")) and len(p) >= 2
            and lost not in p.values() and p,
            "replacement on the surviving nodes", timeout=120,
        )
        assert lost not in after.values()
        with ray_platform.client(url, timeout=120) as client:
            assert client.get("/").status_code == 200
    finally:
        ray_cluster.add_worker(victim)


def test_volume_the_node_cannot_see_is_a_clear_error(ray_platform: Platform, app_file: Any) -> None:
    source = """
import shipyard
app = shipyard.App("ray-volume")
data = shipyard.Volume.from_name("ray-data", create_if_missing=True)

@app.function(volumes={"/data": data})
@shipyard.fastapi_endpoint()
def where():
    return "unreachable"
"""
    url = ray_platform.deploy(app_file(source))["where"]
    # The shared volume directory vanishes from the nodes' view (an unmounted shared file system).
    shutil.rmtree(ray_platform.home / "volumes" / "main" / "ray-data")
    try:
        with ray_platform.client(url, timeout=120) as client:
            response = client.get("/")
        assert response.status_code >= 500
        assert "cannot see the volume directory" in response.text
        assert "shared file system" in response.text
    finally:
        ray_platform.cli("app", "stop", "ray-volume", check=False)


def test_nodes_on_the_local_runtime(platform: Platform) -> None:
    (node,) = node_rows(platform)
    assert node["node_id"] == "local" and node["alive"]


def test_resources_become_ray_actor_options() -> None:
    options = actor_options(Resources(cpu=2, memory=512, gpu="h100:2", region="eu-west"))
    assert options == {
        "num_cpus": 2, "memory": 512 * 2**20, "num_gpus": 2.0, "scheduling_strategy": "SPREAD",
        "max_restarts": 0, "resources": {"accelerator_type:H100": 0.001, "region:eu-west": 0.001},
    }
    assert actor_options(Resources(gpu="any"))["num_gpus"] == 1.0
    assert "resources" not in actor_options(Resources(gpu="any"))
    assert actor_options(Resources())["num_cpus"] == 0.125


def test_infeasible_placement_names_what_is_missing() -> None:
    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0, "region:us-east": 1.0}},
             {"Alive": True, "Resources": {"CPU": 4.0, "region:eu-west": 1.0}},
             {"Alive": False, "Resources": {"CPU": 4.0, "GPU": 8.0, "region:eu-west": 1.0}}]
    check_feasible(actor_options(Resources(gpu="any", region="us-east")), nodes)
    # An endpoint's CPU ask is capped by the largest live node (of its region, when colocated).
    assert (largest_cpus(nodes, None), largest_cpus(nodes, "eu-west"), largest_cpus(nodes, "ap-south")) == (
        4.0, 4.0, 0.0)
    with pytest.raises(ContainerError, match=r"all of 0\.125 CPU, region eu-west, 1 GPU together"):
        check_feasible(actor_options(Resources(gpu="any", region="eu-west")), nodes)
    with pytest.raises(ContainerError, match=r"offers 8 CPU \(live nodes: 2; node regions: eu-west, us-east"):
        check_feasible(actor_options(Resources(cpu=8)), nodes)
