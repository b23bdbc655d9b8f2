from shipyard import App, web_endpoint
from fastapi import Request

app = App()


@app.function()
@web_endpoint()
def get_ip_address(request: Request):
    return f"Your IP address is {request.client.host}"
