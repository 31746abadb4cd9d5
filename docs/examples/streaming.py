"""Upload a file as one streamed message, and download the echo into a file, with progress."""

import filecmp
import os
import sys
import tempfile

from lomond import WebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
SIZE = 768 * 1024  # the demo echo server echoes up to 1 MiB; lomond has no such limit


class Progress:
    """Prints each quarter of ``total`` bytes as it is passed."""

    def __init__(self, what, total):
        self.what, self.total, self.done, self.shown = what, total, 0, 0

    def add(self, count):
        self.done += count
        while self.shown < 4 and self.done * 4 >= self.total * (self.shown + 1):
            self.shown += 1
            print(f"{self.what}: {self.shown * 25}%")


def chunks(file, progress):
    """The file, 64 KiB at a time, counted as it is read."""
    while chunk := file.read(64 * 1024):
        progress.add(len(chunk))
        yield chunk


with tempfile.TemporaryDirectory() as folder:
    upload_path = os.path.join(folder, "upload.bin")
    download_path = os.path.join(folder, "download.bin")
    with open(upload_path, "wb") as out:
        out.write(os.urandom(SIZE))

    ws = WebSocket(url, max_message_size=None)  # no limit: memory is bounded by the parts
    download = open(download_path, "wb")
    received = Progress("download", SIZE)
    for event in ws.connect(stream=True):
        if event.name == "ready":
            with open(upload_path, "rb") as upload:
                # ws.send_binary(upload) sends the file as it is; this counts it too.
                ws.send_binary(chunks(upload, Progress("upload", SIZE)))
        elif event.name == "binary_part":
            download.write(event.data)
            received.add(len(event.data))
            if event.final:
                download.close()
                ws.close()
        elif event.name == "disconnected":
            print("disconnected, graceful:", event.graceful)
    download.close()
    print("the download is the upload:", filecmp.cmp(upload_path, download_path, shallow=False))
