"""A trivial endpoint, always warm: what the proxy-overhead runs measure through."""

from shipyard import App, concurrent, fastapi_endpoint

app = App("bench-ping")


@app.function(min_containers=1)
@concurrent(max_inputs=1000)
@fastapi_endpoint()
async def ping() -> str:
    return "ok"
