from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from shipyard import App, asgi_app, concurrent

app = App("websocket-echo")
web_app = FastAPI()


@web_app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
            else:
                break
    except WebSocketDisconnect:
        pass


@app.function()
@concurrent(max_inputs=100)
@asgi_app()
def ws_app():
    return web_app
