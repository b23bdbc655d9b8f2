from shipyard import App, web_endpoint

app = App()


@app.function()
@web_endpoint()
def square(x: int):
    return {"square": x**2}
