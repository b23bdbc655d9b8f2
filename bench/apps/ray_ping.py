"""Ray Serve's side of the proxy-overhead runs: the same trivial endpoint behind Ray Serve's proxy.

Run by the Ray Serve virtual environment's python: `python ray_ping.py PORT`; prints READY, serves
until its standard input closes.
"""

import sys

import ray
from ray import serve
from starlette.requests import Request


@serve.deployment(max_ongoing_requests=1000)
class Ping:
    async def __call__(self, request: Request) -> str:
        return "ok"


if __name__ == "__main__":
    # "local": a cluster of its own, never one that happens to run on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    serve.run(Ping.bind(), route_prefix="/", blocking=False)
    print("READY", flush=True)
    sys.stdin.read()
    serve.shutdown()
    ray.shutdown()
