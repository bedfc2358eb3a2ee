"""A DNS server on loopback (UDP) answering from a dict of records, as a recursive resolver would:
a name with a CNAME answers any query with the CNAME, then the target's records of the type asked."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

#: (name, type) → record texts; TXT texts are given unquoted and split into 255-byte strings here.
Records = dict[tuple[str, str], list[str]]


class FakeDNS:
    def __init__(self, records: Records, *, silent: bool = False) -> None:
        """``silent``: receive queries and never answer (a resolver that went away)."""
        self.records = {(name.lower().rstrip("."), kind.upper()): texts for (name, kind), texts in records.items()}
        self.silent = silent
        self.queries: list[tuple[str, str]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> FakeDNS:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            question = query.question[0]
            name, kind = question.name.to_text().rstrip(".").lower(), dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, kind))
            if self.silent:
                continue
            self._socket.sendto(self._answer(query, name, kind).to_wire(), client)

    def _answer(self, query: dns.message.Message, name: str, kind: str) -> dns.message.Message:
        response = dns.message.make_response(query)
        owner = name
        for _ in range(8):  # follow a CNAME chain, as a recursive resolver does
            target = self.records.get((owner, "CNAME"))
            if not target or kind == "CNAME":
                break
            response.answer.append(dns.rrset.from_text(owner + ".", 300, "IN", "CNAME", target[0].rstrip(".") + "."))
            owner = target[0].rstrip(".").lower()
        texts = self.records.get((owner, kind), [])
        if texts:
            response.answer.append(dns.rrset.from_text(owner + ".", 300, "IN", kind, *map(_rdata(kind), texts)))
        elif not response.answer and not any(n == owner for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


def _rdata(kind: str):
    def text(value: str) -> str:
        if kind != "TXT":
            return value.rstrip(".") + "." if kind == "CNAME" else value
        data = value.encode()
        return " ".join(
            '"' + data[i : i + 255].decode().replace("\\", "\\\\").replace('"', '\\"') + '"'
            for i in range(0, max(len(data), 1), 255)
        )

    return text
