"""A small HTTP/2 backend for the runtime tests, on the `h2` library (not our own HTTP/2
code, so the gateway's client side meets another implementation), one thread per
connection, cleartext h2c with prior knowledge.

What each request path does:
- `/trailers`: 200, a body, then trailers `grpc-status: 0`, `x-t: 1`;
- `/reset`: RST_STREAM(INTERNAL_ERROR) instead of an answer;
- `/refuse-once`: the first request on this path gets RST_STREAM(REFUSED_STREAM), later ones
  the normal answer;
- `/goaway`: the normal answer, then GOAWAY(NO_ERROR) on that connection;
- `/hang`: never answers (the stream's resets are recorded);
- `/slow`: the normal answer, 0.5 s late;
- `/big?n=BYTES`: a body of n bytes (b"x" repeated), sent as the window allows;
- anything else: 200 with JSON {path, headers, body_length, stream_id, conn}.
Everything is recorded: connections opened, requests (path, headers), streams reset by the
gateway (with their error codes), connections that ended.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes


@dataclass
class Record:
    connections: int = 0
    requests: list = field(default_factory=list)     # (conn no, path, headers dict)
    resets: list = field(default_factory=list)       # (path, error code) reset by the peer
    refused: int = 0
    closed: list = field(default_factory=list)       # conn nos of connections that ended


class H2Backend:
    def __init__(self, max_streams: int = 100) -> None:
        self.max_streams = max_streams
        self.rec = Record()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.rec.connections += 1
                n = self.rec.connections
            threading.Thread(target=self._serve, args=(s, n), daemon=True).start()

    def _serve(self, s: socket.socket, conn_no: int) -> None:
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None)
        c = h2.connection.H2Connection(cfg)
        c.initiate_connection()
        c.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        s.sendall(c.data_to_send())
        streams: dict[int, dict] = {}
        pending: dict[int, bytes] = {}  # stream -> body bytes still to send
        late: list = []                 # (due, stream id) of /slow answers
        s.settimeout(0.05)
        try:
            while True:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    data = None
                if data == b"":
                    return
                now = time.monotonic()
                for due, sid in [x for x in late if x[0] <= now]:
                    late.remove((due, sid))
                    self._answer(c, sid, streams[sid], conn_no, pending, slow_ok=True)
                if data is None:
                    out = c.data_to_send()
                    if out:
                        s.sendall(out)
                    continue
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        hdrs = {k: v for k, v in ev.headers}
                        path = hdrs[b":path"].decode()
                        streams[ev.stream_id] = {"path": path, "headers": hdrs, "len": 0}
                        with self._lock:
                            self.rec.requests.append(
                                (conn_no, path, {k.decode(): v.decode() for k, v in hdrs.items()}))
                    elif isinstance(ev, h2.events.DataReceived):
                        streams[ev.stream_id]["len"] += len(ev.data)
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        if streams[ev.stream_id]["path"].split("?")[0].endswith("/slow"):
                            late.append((time.monotonic() + 0.5, ev.stream_id))
                        else:
                            self._answer(c, ev.stream_id, streams[ev.stream_id], conn_no,
                                         pending)
                    elif isinstance(ev, h2.events.StreamReset):
                        st = streams.get(ev.stream_id, {})
                        pending.pop(ev.stream_id, None)
                        with self._lock:
                            self.rec.resets.append((st.get("path"), int(ev.error_code)))
                    elif isinstance(ev, h2.events.WindowUpdated):
                        pass
                self._pump(c, pending)
                out = c.data_to_send()
                if out:
                    s.sendall(out)
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            s.close()
            with self._lock:
                self.rec.closed.append(conn_no)

    def _pump(self, c, pending: dict[int, bytes]) -> None:
        for sid in list(pending):
            body = pending[sid]
            try:
                n = min(len(body), c.local_flow_control_window(sid), c.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                pending.pop(sid)
                continue
            while n > 0:
                c.send_data(sid, body[:n])
                body = body[n:]
                n = min(len(body), c.local_flow_control_window(sid), c.max_outbound_frame_size)
            if body:
                pending[sid] = body
            else:
                pending.pop(sid)
                c.end_stream(sid)

    def _answer(self, c, sid: int, st: dict, conn_no: int, pending: dict,
                slow_ok: bool = False) -> None:
        path = st["path"]
        base = path.split("?")[0]
        if base.endswith("/hang"):
            return
        if base.endswith("/reset"):
            c.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            return
        if base.endswith("/refuse-once"):
            with self._lock:
                self.rec.refused += 1
                first = self.rec.refused == 1
            if first:
                c.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
                return
        if base.endswith("/trailers"):
            c.send_headers(sid, [(b":status", b"200"), (b"content-type", b"text/plain")])
            c.send_data(sid, b"with trailers\n")
            c.send_headers(sid, [(b"grpc-status", b"0"), (b"x-t", b"1")], end_stream=True)
            return
        if base.endswith("/big"):
            n = int(path.partition("n=")[2] or 1 << 20)
            c.send_headers(sid, [(b":status", b"200"), (b"content-length", str(n).encode())])
            pending[sid] = b"x" * n
            return
        body = json.dumps({
            "path": path, "stream_id": sid, "conn": conn_no, "body_length": st["len"],
            "headers": {k.decode(): v.decode() for k, v in st["headers"].items()},
        }).encode()
        c.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())])
        c.send_data(sid, body, end_stream=True)
        if base.endswith("/goaway"):
            c.close_connection(ErrorCodes.NO_ERROR)
