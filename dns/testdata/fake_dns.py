#!/usr/bin/python3
# fake_dns.py — a tiny authoritative DNS server on loopback for dns/ tests.
#
# Usage: /usr/bin/python3 fake_dns.py ZONE_FILE QUERY_LOG
#
# Binds UDP and TCP on a free port of 127.0.0.1, prints the port on one line
# of stdout, then answers queries from ZONE_FILE until its stdin is closed
# (the test keeps a pipe open to it) or it gets SIGTERM. A UDP reply over 512
# bytes is sent truncated (TC), its full form over TCP. Every query received is
# appended to QUERY_LOG as "name TYPE" (lower case, no trailing dot) before
# it is answered, so a test can count what reached the server. A zone file
# rewritten while it runs is read again before the next answer.
#
# The zone file holds records in BIND syntax with absolute names, plus lines
# "!BEHAVIOUR NAME" that make every query for NAME misbehave:
#   !servfail   answer SERVFAIL          !refused   answer REFUSED
#   !drop       never answer             !truncated a reply cut short in the
#   !garbage    the query id, then junk               middle of its answer
# and "!secure NAME", which makes the answers for NAME authenticated: their
# AD bit is set when the query had AD (or DO) set, as a validating resolver
# does (RFC 6840 §5.7), and clear otherwise.
# CNAMEs are followed inside the zone. Negative answers (NXDOMAIN, NODATA)
# carry the zone's SOA in the authority section, as RFC 2308 asks.
#
# Needs python3-dnslib (Debian), hence /usr/bin/python3 rather than a pyenv.
import os
import select
import signal
import socket
import sys

from dnslib import AAAA, MX, QTYPE, RCODE, RR, A, DNSLabel, DNSRecord


def key(name):
    return str(name).lower().rstrip(".")


def load_zone(path):
    behaviours = {}
    secure = set()
    zone_lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("!"):
                what, name = stripped[1:].split()
                if what == "secure":
                    secure.add(key(name))
                else:
                    behaviours[key(name)] = what
            else:
                zone_lines.append(line)
    records = RR.fromZone("".join(zone_lines))
    return records, behaviours, secure


class Zone:
    def __init__(self, records, behaviours, secure):
        self.records = records
        self.behaviours = behaviours
        self.secure = secure
        self.soa = next(r for r in records if r.rtype == QTYPE.SOA)

    def at(self, name):
        return [r for r in self.records if key(r.rname) == name]

    def exists(self, name):
        # A name exists when it owns records or has names below it.
        suffix = "." + name
        return any(key(r.rname) == name or key(r.rname).endswith(suffix) for r in self.records)

    def answer(self, request):
        reply = request.reply()
        q = request.q
        name = key(q.qname)
        do = any(r.rtype == QTYPE.OPT and getattr(r, "edns_do", 0) for r in request.ar)
        reply.header.ad = 1 if name in self.secure and (request.header.ad or do) else 0
        for _ in range(8):
            here = self.at(name)
            cnames = [r for r in here if r.rtype == QTYPE.CNAME]
            if not cnames or q.qtype == QTYPE.CNAME:
                break
            reply.add_answer(cnames[0])
            name = key(cnames[0].rdata.label)
        matching = [r for r in self.at(name) if r.rtype == q.qtype]
        for r in matching:
            reply.add_answer(r)
        if not matching:
            if not self.exists(name):
                reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.soa)
        return reply.pack()


def misbehave(what, request, data):
    q = request.q
    if what == "drop":
        return None
    if what in ("servfail", "refused"):
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL if what == "servfail" else RCODE.REFUSED
        return reply.pack()
    if what == "truncated":
        reply = request.reply()
        if q.qtype == QTYPE.MX:
            rdata = MX(DNSLabel("mx." + key(q.qname)), 10)
        elif q.qtype == QTYPE.AAAA:
            rdata = AAAA("2001:db8::99")
        else:
            rdata = A("192.0.2.99")
        reply.add_answer(RR(q.qname, q.qtype, rdata=rdata, ttl=300))
        # Keep the header and question intact (so the client takes the reply
        # as the answer to its query), then cut the answer record in half.
        packed = reply.pack()
        return packed[: len(packed) - 5]
    if what == "garbage":
        return data[:2] + bytes([0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]) + b"\xc0\xff\xff\x07junk"
    raise SystemExit(f"unknown behaviour {what}")


def bind_pair():
    # A UDP and a TCP socket on the same free port of 127.0.0.1.
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp, port
    raise SystemExit("no free port")


def respond(zone, log, data, tcp):
    try:
        request = DNSRecord.parse(data)
    except Exception:
        return None
    name = key(request.q.qname)
    log.write(f"{name} {QTYPE[request.q.qtype]}\n")
    log.flush()
    what = zone.behaviours.get(name)
    if what:
        return misbehave(what, request, data)
    reply = zone.answer(request)
    if len(reply) > 512 and not tcp:
        # Too big for plain UDP: the header and question with TC set, so
        # the client asks again over TCP.
        short = request.reply()
        short.header.tc = 1
        reply = short.pack()
    return reply


def main():
    zone = Zone(*load_zone(sys.argv[1]))
    mtime = os.stat(sys.argv[1]).st_mtime_ns
    log = open(sys.argv[2], "a", encoding="utf-8")
    udp, listener, port = bind_pair()
    print(port, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    clients = {}  # TCP connection -> bytes received so far
    while True:
        ready, _, _ = select.select([udp, listener, sys.stdin, *clients], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
            return
        # A test may rewrite the zone file (atomically, by rename): answers
        # come from the new one from then on.
        if os.stat(sys.argv[1]).st_mtime_ns != mtime:
            mtime = os.stat(sys.argv[1]).st_mtime_ns
            zone = Zone(*load_zone(sys.argv[1]))
        if udp in ready:
            data, peer = udp.recvfrom(65535)
            reply = respond(zone, log, data, tcp=False)
            if reply is not None:
                udp.sendto(reply, peer)
        if listener in ready:
            conn, _ = listener.accept()
            clients[conn] = b""
        for conn in [c for c in ready if c in clients]:
            chunk = conn.recv(65535)
            if not chunk:
                conn.close()
                del clients[conn]
                continue
            buf = clients[conn] + chunk
            # Messages over TCP carry a two-byte length prefix (RFC 1035 4.2.2).
            while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                size = int.from_bytes(buf[:2], "big")
                reply = respond(zone, log, buf[2 : 2 + size], tcp=True)
                buf = buf[2 + size :]
                if reply is not None:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
            clients[conn] = buf


if __name__ == "__main__":
    main()
