#!/usr/bin/env python3
"""A stand-in OTLP/HTTP collector for the tracing workloads (stdlib only).

  otlp_sink.py --port P [--ready FILE]
      listens on 127.0.0.1:P, answers every POST with 200 and an empty
      protobuf body (an ExportTraceServiceResponse with nothing rejected),
      keeping connections alive as a collector does; touches FILE once it
      listens. Prints the requests and bytes received when terminated.
"""
import argparse
import http.server
import signal
import sys
import threading

received = {"requests": 0, "bytes": 0}
lock = threading.Lock()


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        with lock:
            received["requests"] += 1
            received["bytes"] += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ready")
    a = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Sink)
    server.daemon_threads = True

    def stop(*_):
        print(f"otlp sink: {received['requests']} exports, {received['bytes']} bytes", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if a.ready:
        open(a.ready, "w").close()
    server.serve_forever()


if __name__ == "__main__":
    main()
