import subprocess

from shipyard import App, web_server

app = App()


@app.function()
@web_server(8000)
def my_file_server():
    subprocess.Popen("python -m http.server -d / 8000", shell=True)
