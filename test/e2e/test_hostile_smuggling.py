"""Hostile input, end to end (issue 7): SMTP smuggling and STARTTLS injection.

- Smuggling: every end-of-data look-alike (bare LF / bare CR / NUL around a
  dot) followed by a second MAIL/RCPT/DATA, sent one command at a time,
  pipelined in one write, and byte by byte. At most one message may result
  per DATA, the replies stay in step, and what sluiced relays (to a raw
  socket sink that records the exact bytes) has CRLF line ends only, every
  lone dot stuffed, and no early end of data.
- STARTTLS injection on the server side (relay and submission listeners,
  beyond test_submission's 587 cases) and on the client side: a receiving
  server that sends forged replies right behind its "220" to STARTTLS.

test_dialogue.test_data_content_rules covers one mixed look-alike message in
the spool; this suite covers the variants one by one, the pipelined and split
forms, and the bytes on the wire after delivery.
"""
import base64
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Client, Sluiced, SubmissionSluiced, ThreadedServer, TlsClient, smtp_ssl, tls_context, user_line

SINK_HOST = "127.0.0.2"

# What a vulnerable receiver might take as a second transaction.
# A complete header section (Date, Message-ID, From): the relay listener adds
# nothing ([relay] add_missing_headers), so what arrives ends with what was sent.
HEAD = b"From: s@sender.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <smuggle@sender.test>\r\n"

SMUGGLED = (b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@target.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")

BARE_CR = b"554 5.6.0 Error: bare CR in message content\r\n"
NUL = b"554 5.6.0 Error: NUL in message content\r\n"

# (look-alike sent after "A", what the spool must hold in its place, or the
# refusal). None of them contains a real CRLF "." CRLF.
VARIANTS = [
    (b"\n.\n", b"\r\n.\r\n"),
    (b"\r.\r", BARE_CR),
    (b"\r.\n", BARE_CR),
    (b"\n.\r\n", b"\r\n.\r\n"),
    (b"\r\n.\n", b"\r\n.\r\n"),
    (b"\n.\r", BARE_CR),
    (b"\r\n.\r", BARE_CR),
    (b"\r\n.\r\r\n", BARE_CR),
    (b"\r.\r\n", BARE_CR),
    (b"\n\n.\n\n", b"\r\n\r\n.\r\n\r\n"),
    (b"\r\n.\x00\r\n", NUL),
    (b"\r\n\x00.\r\n", NUL),
    (b"\n.\x00\n", NUL),
    (b"\x00\n.\n", NUL),
    (b"\r\n..\r\n", b"\r\n.\r\n"),          # a stuffed dot: the line "." as content
    (b"\r\n. \r\n", b"\r\n \r\n"),        # any line starting with a dot loses it
    (b"\r\n.\t\n", b"\r\n\t\r\n"),
]

MODES = ("lockstep", "pipelined", "bytewise")


def check_wire(test, raw):
    """raw: the DATA section as sent by sluiced (terminator excluded, final
    CRLF included). Asserts CRLF-only line ends and no line that is a lone
    dot; returns the content with the transparency dots removed."""
    for i, b in enumerate(raw):
        if b == 0x0A:
            test.assertEqual(raw[i - 1:i], b"\r", "bare LF on the wire at %d: %r" % (i, raw[max(0, i - 20):i + 20]))
        if b == 0x0D:
            test.assertEqual(raw[i + 1:i + 2], b"\n", "bare CR on the wire at %d: %r" % (i, raw[max(0, i - 20):i + 20]))
        test.assertNotEqual(b, 0, "NUL on the wire")
    test.assertTrue(raw.endswith(b"\r\n"), raw[-50:])
    lines = raw[:-2].split(b"\r\n")
    test.assertNotIn(b".", lines, "an unstuffed lone dot on the wire")
    return b"".join((l[1:] if l.startswith(b".") else l) + b"\r\n" for l in lines)


# ---- a raw receiving server --------------------------------------------------

class RawSink(ThreadedServer):
    """A receiving SMTP server on raw sockets that records the exact bytes of
    every transaction: {"mail", "rcpts", "raw" (DATA section as sent, final
    CRLF included, terminator excluded), "tls"}. With `tls_context` it offers
    STARTTLS and sends `inject` in the same write as its "220". final_reply:
    the reply to the end of data."""

    def __init__(self, host=SINK_HOST, tls_context=None, inject=b"",
                 final_reply=b"250 2.0.0 Ok: queued as SINK1\r\n"):
        self.tls_context = tls_context
        self.inject = inject
        self.final_reply = final_reply
        self.transactions = []
        self.commands = []       # (in_tls, line) in arrival order, all connections
        self.plaintext_after_starttls = []
        self.lock = threading.Lock()
        super().__init__(host, 0, backlog=64)

    def serve(self, conn, number):
        conn.settimeout(30)
        buf = b""
        in_tls = False

        def fill():
            nonlocal buf
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                fill()
            l, buf = buf.split(b"\r\n", 1)
            return l

        try:
            conn.sendall(b"220 sink.test ESMTP raw\r\n")
            mail, rcpts = None, []
            while True:
                l = line()
                with self.lock:
                    self.commands.append((in_tls, l))
                verb = l[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    ext = [b"sink.test", b"PIPELINING", b"8BITMIME", b"SIZE 100000000"]
                    if self.tls_context and not in_tls:
                        ext.append(b"STARTTLS")
                    conn.sendall(b"".join(b"250-" + e + b"\r\n" for e in ext[:-1]) + b"250 " + ext[-1] + b"\r\n")
                elif verb == b"STAR" and self.tls_context and not in_tls:
                    conn.sendall(b"220 2.0.0 Ready to start TLS\r\n" + self.inject)
                    if buf:
                        self.plaintext_after_starttls.append(buf)
                        buf = b""
                    conn = self.tls_context.wrap_socket(conn, server_side=True)
                    in_tls = True
                    mail, rcpts = None, []
                elif verb == b"MAIL":
                    m = re.match(rb"MAIL FROM:<([^>]*)>", l, re.I)
                    mail, rcpts = (m.group(1).decode() if m else l.decode("latin-1")), []
                    conn.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    m = re.match(rb"RCPT TO:<([^>]*)>", l, re.I)
                    rcpts.append(m.group(1).decode() if m else l.decode("latin-1"))
                    conn.sendall(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    # The strict end: CRLF "." CRLF (the section's first line
                    # counts as following a CRLF).
                    while True:
                        probe = b"\r\n" + buf
                        end = probe.find(b"\r\n.\r\n")
                        if end >= 0:
                            raw = probe[2:end + 2]
                            buf = probe[end + 5:]
                            break
                        fill()
                    with self.lock:
                        self.transactions.append({"mail": mail, "rcpts": rcpts, "raw": raw, "tls": in_tls})
                    mail, rcpts = None, []
                    conn.sendall(self.final_reply)
                elif verb == b"RSET":
                    mail, rcpts = None, []
                    conn.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                elif verb == b"NOOP":
                    conn.sendall(b"250 2.0.0 Ok\r\n")
                else:
                    conn.sendall(b"500 5.5.2 what?\r\n")
        except (EOFError, OSError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass


def wait_for(pred, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def make_cert(directory, cn):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=" + cn, "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


class RelayToSink(unittest.TestCase):
    """sluiced (relay listener, trusted loopback) with a relayhost that is a
    RawSink on 127.0.0.2."""
    sink_kwargs = {}

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="sluice-hostile-")
        self.sink = RawSink(**self.sink_kwargs_for_test())
        extra = ('[delivery]\nrelayhost = "[%s]:%d"\nretry_schedule = ["1s"]\n'
                 % (SINK_HOST, self.sink.port))
        self.d = Sluiced(extra=extra)
        self.d.start()

    def sink_kwargs_for_test(self):
        return dict(self.sink_kwargs)

    def tearDown(self):
        self.d.stop()
        self.sink.stop()
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is not None and any(t is self or getattr(t, "test_case", None) is self
                                      for t, _ in result.failures + result.errors):
            print("---- sluiced log ----\n" + self.d.log()[-6000:])
        shutil.rmtree(self.d.dir, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def client(self):
        c = Client(self.d.port)
        self.addCleanup(c.close)
        self.assertEqual(c.code(), 220)
        return c

    def assertNoMoreReplies(self, c, wait=0.3):
        c.sock.settimeout(wait)
        try:
            data = c.sock.recv(65536)
        except socket.timeout:
            data = None
        finally:
            c.sock.settimeout(10)
        self.assertIsNone(data, "unexpected extra bytes (or EOF): %r" % (c.buf + (data or b"")))
        self.assertEqual(c.buf, b"")


class Smuggling(RelayToSink):
    def content(self, i, variant):
        return HEAD + b"Subject: smuggle %d\r\n\r\nA" % i + variant + SMUGGLED

    def one(self, mode, i, variant):
        """One DATA transaction carrying variant i; returns the reply to the
        end of data. Every other reply must be exactly the expected one."""
        sender = "v%02d-%s@sender.test" % (i, mode)
        content = self.content(i, variant)
        c = Client(self.d.port)
        try:
            self.assertEqual(c.code(), 220)
            if mode == "pipelined":
                c.send(b"EHLO client.test\r\nMAIL FROM:<" + sender.encode() + b">\r\n"
                       b"RCPT TO:<bob@dest.test>\r\nDATA\r\n" + content + b".\r\nNOOP\r\nQUIT\r\n")
                self.assertTrue(c.reply().startswith(b"250-mx.sluice.test"))
                self.assertEqual(c.reply(), b"250 2.1.0 Ok\r\n")
                self.assertEqual(c.reply(), b"250 2.1.5 Ok\r\n")
                self.assertEqual(c.code(), 354)
                final = c.reply()
                self.assertEqual(c.reply(), b"250 2.0.0 Ok\r\n", "replies out of step after %r" % variant)
                self.assertEqual(c.reply(), b"221 2.0.0 Bye\r\n")
                self.assertTrue(c.closed())
                self.assertEqual(c.buf, b"", "replies beyond one transaction")
                return sender, final
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender), b"250 2.1.0 Ok\r\n")
            self.assertEqual(c.cmd("RCPT TO:<bob@dest.test>"), b"250 2.1.5 Ok\r\n")
            self.assertEqual(c.cmd("DATA")[:4], b"354 ")
            if mode == "lockstep":
                c.send(content + b".\r\n")
            else:  # bytewise: the look-alike and what follows it in separate segments
                c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                head = content.index(b"A" + variant) + 1
                tail = head + len(variant) + 12
                c.send(content[:head])
                for k in range(head, tail):
                    time.sleep(0.003)
                    c.send(content[k:k + 1])
                c.send(content[tail:] + b".\r\n")
            final = c.reply()
            self.assertNoMoreReplies(c)
            self.assertEqual(c.cmd("NOOP"), b"250 2.0.0 Ok\r\n")
            self.assertEqual(c.cmd("QUIT"), b"221 2.0.0 Bye\r\n")
            return sender, final
        finally:
            c.close()

    def test_look_alikes_never_end_the_data_or_start_a_second_message(self):
        expected = {}   # sender -> the content the spool (and the sink) must hold
        for mode in MODES:
            for i, (variant, outcome) in enumerate(VARIANTS):
                with self.subTest(mode=mode, variant=variant):
                    sender, final = self.one(mode, i, variant)
                    if outcome in (BARE_CR, NUL):
                        self.assertEqual(final, outcome)
                    else:
                        self.assertRegex(final, rb"^250 2\.0\.0 Ok: queued as [0-9A-F]{16}\r\n$")
                        expected[sender] = HEAD + b"Subject: smuggle %d\r\n\r\nA" % i + outcome + SMUGGLED
        accepted = [v for v, outcome in VARIANTS if outcome not in (BARE_CR, NUL)]
        self.assertEqual(len(expected), len(accepted) * len(MODES))

        # Exactly the accepted messages reach the sink, each once, each as
        # one transaction whose content went out CRLF-clean and dot-stuffed.
        wait_for(lambda: len(self.sink.transactions) >= len(expected), timeout=30,
                 what="%d deliveries at the sink" % len(expected))
        wait_for(lambda: self.d.log().count(": removed") >= len(expected), what="every message removed")
        time.sleep(0.3)
        got = {t["mail"]: t for t in self.sink.transactions}
        self.assertEqual(len(self.sink.transactions), len(expected))
        self.assertEqual(sorted(got), sorted(expected))
        for t in self.sink.transactions:
            self.assertEqual(t["rcpts"], ["bob@dest.test"])
        mails = [l for _, l in self.sink.commands if l[:4].upper() == b"MAIL"]
        self.assertFalse([m for m in mails if b"evil" in m], mails)
        rcpts = [l for _, l in self.sink.commands if l[:4].upper() == b"RCPT"]
        self.assertFalse([r for r in rcpts if b"victim" in r], rcpts)
        for sender, want in expected.items():
            with self.subTest(sender=sender):
                raw = got[sender]["raw"]
                content = check_wire(self, raw)
                self.assertTrue(content.startswith(b"Received: from client.test ([127.0.0.1])\r\n"), content[:200])
                self.assertTrue(content.endswith(want), (content[-200:], want))
                # the look-alike's lone dot went out stuffed
                if b"\r\n.\r\n" in want:
                    self.assertIn(b"\r\n..\r\n", raw)
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])

    def test_smuggled_transaction_after_a_refused_message_is_not_run(self):
        """The bare-CR refusal comes only at the real end of data: the
        smuggled commands inside are content of the refused message, not
        commands, even when the client pipelines more afterwards."""
        c = self.client()
        c.send(b"EHLO c\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@dest.test>\r\nDATA\r\n"
               b"Subject: x\r\n\r\nA\r.\r" + SMUGGLED + b"more\r\n.\r\n"
               b"MAIL FROM:<b@sender.test>\r\nRCPT TO:<carol@dest.test>\r\nDATA\r\n"
               + HEAD + b"Subject: second\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
        self.assertEqual(c.reply()[:4], b"250-")
        self.assertEqual(c.reply(), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.reply(), b"250 2.1.5 Ok\r\n")
        self.assertEqual(c.code(), 354)
        self.assertEqual(c.reply(), BARE_CR)
        self.assertEqual(c.reply(), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.reply(), b"250 2.1.5 Ok\r\n")
        self.assertEqual(c.code(), 354)
        self.assertRegex(c.reply(), rb"^250 2\.0\.0 Ok: queued as ")
        self.assertEqual(c.reply(), b"221 2.0.0 Bye\r\n")
        self.assertTrue(c.closed())
        self.assertEqual(c.buf, b"")
        wait_for(lambda: self.sink.transactions, what="the second message at the sink")
        wait_for(lambda: ": removed" in self.d.log(), what="its removal")
        self.assertEqual([(t["mail"], t["rcpts"]) for t in self.sink.transactions],
                         [("b@sender.test", ["carol@dest.test"])])
        self.assertTrue(check_wire(self, self.sink.transactions[0]["raw"]).endswith(HEAD + b"Subject: second\r\n\r\nsecond\r\n"))

    def test_dot_lines_of_every_kind_are_stuffed_on_the_way_out(self):
        """Content full of dots (leading dots, lone dots after bare LFs, a
        last line without a line end) arrives at the next hop unchanged."""
        body = (HEAD + b"Subject: dots\r\n\r\n..\r\n...\r\n.x\r\n..x\r\n\n.\n.\n\n..\n . \r\n"
                b"end .\r\n.\r\n")
        # As stored: unstuffed once, bare LFs as CRLF, the lone "." lines kept.
        stored = (HEAD + b"Subject: dots\r\n\r\n.\r\n..\r\nx\r\n.x\r\n\r\n.\r\n.\r\n\r\n.\r\n . \r\nend .\r\n")
        c = self.client()
        c.cmd("EHLO c")
        c.cmd("MAIL FROM:<dots@sender.test>")
        c.cmd("RCPT TO:<bob@dest.test>")
        self.assertEqual(c.cmd("DATA")[:3], b"354")
        c.send(body)
        self.assertRegex(c.reply(), rb"^250 2\.0\.0 ")
        c.cmd("QUIT")
        wait_for(lambda: self.sink.transactions, what="delivery")
        content = check_wire(self, self.sink.transactions[0]["raw"])
        self.assertTrue(content.endswith(stored), content)


# ---- STARTTLS injection, client side ------------------------------------------

class StarttlsInjectionAtTheMx(RelayToSink):
    """The receiving server answers STARTTLS with "220" and, in the same
    write, forged replies. sluiced must throw them away before the handshake;
    taken as replies inside TLS they would answer EHLO, MAIL, RCPT, DATA and
    the end of data before the real server does."""

    FORGED = b"250 2.0.0 forged\r\n" * 12

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="sluice-hostile-cert-")
        cls.ctx = make_cert(cls.certdir, "sink.test")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certdir, ignore_errors=True)

    def sink_kwargs_for_test(self):
        final = b"250 2.0.0 Ok: queued as REAL1\r\n"
        if self._testMethodName.endswith("refusal_is_not_overridden"):
            final = b"451 4.3.0 real server says try later\r\n"
        return dict(tls_context=self.ctx, inject=self.FORGED, final_reply=final)

    def test_forged_replies_are_discarded_and_the_real_ones_count(self):
        c = self.client()
        c.cmd("EHLO c")
        c.cmd("MAIL FROM:<alice@sender.test>")
        c.cmd("RCPT TO:<bob@dest.test>")
        c.cmd("DATA")
        self.assertRegex(c.cmd(b"Subject: tls\r\n\r\nbody\r\n."), rb"^250 ")
        c.cmd("QUIT")
        wait_for(lambda: "status=sent" in self.d.log() or "status=deferred" in self.d.log(),
                 what="a delivery outcome")
        self.assertEqual(len(self.sink.transactions), 1, self.sink.commands)
        t = self.sink.transactions[0]
        self.assertTrue(t["tls"])
        self.assertEqual(t["mail"], "alice@sender.test")
        # inside TLS the dialogue started over with EHLO
        in_tls = [l for tls, l in self.sink.commands if tls]
        self.assertTrue(in_tls[0].upper().startswith(b"EHLO "), in_tls)
        self.assertIn("delivery: tls to 127.0.0.2[127.0.0.2]:%d" % self.sink.port, self.d.log())
        # the reply logged is the real server's, not a forged one
        self.assertRegex(self.d.log(), r"to=<bob@dest\.test> relay=\S+ delay=\S+ tls=\S+ dsn=2\.0\.0 status=sent "
                                       r"\(250 2\.0\.0 Ok: queued as REAL1\)")
        self.assertNotIn("forged", self.d.log())
        self.assertEqual(self.sink.plaintext_after_starttls, [])

    def test_forged_success_after_a_refusal_is_not_overridden(self):
        """The real server answers the end of data with 451: the message is
        deferred. Had a forged "250" been read as that answer, it would be
        marked sent and removed."""
        c = self.client()
        c.cmd("EHLO c")
        c.cmd("MAIL FROM:<alice@sender.test>")
        c.cmd("RCPT TO:<bob@dest.test>")
        c.cmd("DATA")
        self.assertRegex(c.cmd(b"Subject: tls\r\n\r\nbody\r\n."), rb"^250 ")
        c.cmd("QUIT")
        self.d.wait_log("status=deferred", timeout=15)
        self.assertGreaterEqual(len(self.sink.transactions), 1)
        self.assertTrue(all(t["tls"] for t in self.sink.transactions))
        self.assertIn("status=deferred (451 4.3.0 real server says try later)", self.d.log())
        self.assertNotIn("status=sent", self.d.log())
        self.assertNotIn(": removed", self.d.log())
        self.d.stop()
        msgs = self.d.spool_messages(body=False)
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["recipients"][0]["status"], "deferred")


# ---- STARTTLS injection, server side --------------------------------------------

ALICE = ("alice@example.org", "Alice-pw-1")


class StarttlsInjectionAtSluiced(unittest.TestCase):
    """Extends test_submission.StarttlsInjection (587) to the relay listener
    of an untrusted client (STARTTLS is offered there too) and to injected
    bytes that arrive in a separate segment after the STARTTLS line."""

    def setUp(self):
        # command_timeout 2s: should a slow machine read the injected bytes
        # together with the STARTTLS line (discarded), the handshake that
        # never comes ends quickly too.
        self.d = SubmissionSluiced(users=[user_line(*ALICE)], relay=True, trusted=["10.0.0.0/8"],
                                   limits={"command_timeout": "2s"})
        self.d.start()
        self.ctx = tls_context(self.d.cert_path)

    def tearDown(self):
        self.d.stop()
        shutil.rmtree(self.d.dir, ignore_errors=True)

    def open(self, port):
        c = TlsClient(port)
        self.addCleanup(c.close)
        self.assertEqual(c.code(), 220)
        return c

    def test_injection_on_the_relay_listener(self):
        plain = base64.b64encode(b"\0" + ALICE[0].encode() + b"\0" + ALICE[1].encode())
        c = self.open(self.d.relay_port)
        self.assertIn(b"STARTTLS", c.cmd("EHLO client.test"))
        # If run inside TLS these would log in and queue a message.
        c.send(b"STARTTLS\r\nEHLO evil\r\nAUTH PLAIN " + plain + b"\r\nMAIL FROM:<alice@example.org>\r\n"
               b"RCPT TO:<x@example.net>\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n")
        self.assertEqual(c.reply(), b"220 2.0.0 Ready to start TLS\r\n")
        c.starttls(self.ctx)   # fails if any plaintext came after the 220
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"503 5.5.1 Error: send HELO/EHLO first\r\n")
        self.assertTrue(c.cmd("EHLO client.test").endswith(b"250-AUTH PLAIN LOGIN\r\n250 REQUIRETLS\r\n"))  # not logged in
        self.assertEqual(c.cmd("MAIL FROM:<alice@example.org>"), b"250 2.1.0 Ok\r\n")
        self.assertEqual(c.cmd("RCPT TO:<x@example.net>"), b"554 5.7.1 <x@example.net>: Relay access denied\r\n")
        self.assertEqual(c.cmd("QUIT"), b"221 2.0.0 Bye\r\n")
        self.d.stop()
        self.assertEqual(self.d.spool_messages(), [])
        self.assertNotIn("auth from=", self.d.log())

    def test_commands_in_a_later_segment_before_the_handshake(self):
        """The client sends STARTTLS, then at once (a separate segment, before
        reading the 220) a command in plaintext. Those bytes reach the TLS
        layer as a broken ClientHello: the handshake fails, the command is
        never answered, and the daemon carries on."""
        for port in (self.d.port587, self.d.relay_port):
            with self.subTest(port=port):
                c = self.open(port)
                c.cmd("EHLO client.test")
                c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c.send(b"STARTTLS\r\n")
                time.sleep(0.05)
                c.send(b"NOOP\r\nNOOP\r\n")
                self.assertEqual(c.reply(), b"220 2.0.0 Ready to start TLS\r\n")
                self.assertTrue(c.closed(timeout=10))
                self.assertNotIn(b"250", c.buf)   # at most a TLS alert, never a reply
                if c.buf:
                    self.assertEqual(c.buf[0], 0x15, c.buf)
        with smtp_ssl(self.d.port465, self.ctx) as s:
            self.assertEqual(s.login(*ALICE)[0], 235)


if __name__ == "__main__":
    unittest.main()
