"""HTTP/1.1 over one raw keep-alive socket: every reset or early close is seen, none retried."""

from __future__ import annotations

import socket


class ConnectionLost(Exception):
    pass


class KeepAliveConnection:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        try:
            self.sock.sendall(head.encode())
            raw_head = self._read_until(b"\r\n\r\n")
        except OSError as exc:
            raise ConnectionLost(repr(exc)) from exc
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self._read_exactly(int(headers.get("content-length", "0")))
        return status, headers, body

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionLost("the server closed the connection")
        self.buffer += data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._recv()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._recv()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data
