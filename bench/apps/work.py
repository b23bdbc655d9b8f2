"""An endpoint doing 20 ms of (awaited) work with 20 concurrent inputs per container: step load,
redeploy and scale-down runs, scaling from zero."""

import asyncio

from shipyard import App, concurrent, fastapi_endpoint

app = App("bench-work")


@app.function(scaledown_window=5)
@concurrent(max_inputs=20)
@fastapi_endpoint()
async def work() -> str:
    await asyncio.sleep(0.02)
    return "ok"
