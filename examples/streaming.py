import asyncio

from fastapi.responses import StreamingResponse

from shipyard import App, fastapi_endpoint

app = App("streaming")


async def events(count: int):
    for i in range(count):
        yield f"data: event {i}\n\n"
        await asyncio.sleep(0.3)


@app.function()
@fastapi_endpoint()
def stream(count: int = 3):
    return StreamingResponse(events(count), media_type="text/event-stream")
