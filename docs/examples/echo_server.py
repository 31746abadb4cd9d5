"""Run the echo server that ships with lomond, to try the other examples against.

    python echo_server.py          # ws://127.0.0.1:8765/
    python echo_server.py 9000     # another port (0: any free port)

It listens on the loopback interface only, echoes every message and answers pings.
Stop it with Ctrl-C.
"""

import sys
import threading

from lomond.cli.demo_server import EchoServer

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
with EchoServer(port=port) as server:
    print(f"echo server on {server.url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
