"""Connect with a client certificate, through an ssl.SSLContext of your own.

Run it in a directory holding ``ca.pem`` (the CA that signed the server's
certificate), ``client.pem`` and ``client.key`` (the client's certificate and key).
"""

import ssl
import sys

from lomond import WebSocket

url = sys.argv[1] if len(sys.argv) > 1 else "wss://ws.internal/"

context = ssl.create_default_context(cafile="ca.pem")
context.load_cert_chain("client.pem", "client.key")
ws = WebSocket(url, ssl_context=context)

for event in ws.connect():
    if event.name == "ready":
        print("the server accepted the client certificate")
        ws.close()
    elif event.name == "connect_fail":
        print("could not connect:", event.reason)
    elif event.name == "disconnected":
        print("disconnected:", event.reason)
