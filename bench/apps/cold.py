"""A FastAPI endpoint that scales to zero half a second after each request: cold start runs."""

from shipyard import App, fastapi_endpoint

app = App("bench-cold")


@app.function(scaledown_window=0.5)
@fastapi_endpoint()
async def hello() -> str:
    return "ok"
