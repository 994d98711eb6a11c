"""Delivery connections end to end (see test_delivery.py for the set-up):
the idle connection cache, a kept connection that the server dropped, a
large message streamed from the spool, and what the next MX host is offered
after the first one refused a recipient (docs/delivery.md, "Connections").

Peers on loopback: the aiosmtpd sinks of test_delivery on 127.0.0.2 and
127.0.0.3, and raw servers: on 127.0.0.10 one that takes one message per
connection and then hangs up on the next command, like a server that
drops connections it considers idle; on 127.0.0.11 one that refuses some
recipients and then hangs up at DATA.
"""
import re
import socket
import time
import unittest

from harness import ThreadedServer
from test_delivery import ZONE, Delivery, wait_for

CACHE_ZONE = ZONE + """\
oneshot.test.      300 IN MX 10 mx.oneshot.test.
mx.oneshot.test.   300 IN A 127.0.0.10
twomx.test.        300 IN MX 10 mx1.twomx.test.
twomx.test.        300 IN MX 20 mx.example.test.
mx1.twomx.test.    300 IN A 127.0.0.11
"""

CLOSED = re.compile(r"delivery: conn=\d+ relay=(\S+) closed transactions=(\d+) age=([0-9.]+)s")


class OneShotServer(ThreadedServer):
    """One transaction per connection; the next command after it (the MAIL
    FROM of a reused connection) makes it close the socket without a reply.
    Records each message as (connection number, content). With
    hang_up_at_data, it refuses every recipient containing "refused" (550)
    and closes the connection when DATA comes instead."""

    def __init__(self, host, port, hang_up_at_data=False):
        self.hang_up_at_data = hang_up_at_data
        self.rcpts = []
        self.messages = []
        super().__init__(host, port)

    def serve(self, conn, number):
        conn.settimeout(20)
        f = conn.makefile("rb")
        try:
            conn.sendall(b"220 oneshot.test ESMTP\r\n")
            done = False
            data = None
            while True:
                line = f.readline()
                if not line:
                    return
                if data is not None:
                    if line == b".\r\n":
                        self.messages.append((number, b"".join(data)))
                        data = None
                        done = True
                        conn.sendall(b"250 2.0.0 queued\r\n")
                    else:
                        data.append(line)
                    continue
                cmd = line[:4].upper()
                if cmd in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-oneshot.test\r\n250 8BITMIME\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                elif done:
                    return  # hang up on the second transaction
                elif cmd == b"RCPT":
                    self.rcpts.append(line.strip())
                    if self.hang_up_at_data and b"refused" in line:
                        conn.sendall(b"550 5.1.1 no such user\r\n")
                    else:
                        conn.sendall(b"250 2.1.5 ok\r\n")
                elif cmd == b"DATA" and self.hang_up_at_data:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                elif cmd == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    data = []
                else:
                    conn.sendall(b"250 ok\r\n")
        except OSError:
            return
        finally:
            conn.close()


class DeliveryCache(Delivery):
    zone = CACHE_ZONE

    def closed_lines(self):
        return [m.groups() for m in CLOSED.finditer(self.d.log())]

    def test_an_idle_connection_carries_the_next_message_then_closes(self):
        self.submit("alice@sender.test", ["first@example.test"])
        wait_for(lambda: len(self.mx.messages) == 1, what="the first message")
        time.sleep(0.5)  # the connection waits idle meanwhile
        self.submit("alice@sender.test", ["second@example.test"])
        wait_for(lambda: len(self.mx.messages) == 2, what="the second message")
        self.assertIs(self.mx.sessions[0], self.mx.sessions[1])
        self.assertEqual(self.closed_lines(), [])
        # After 2 s idle it says QUIT and closes.
        wait_for(lambda: self.closed_lines(), timeout=10, what="the idle connection to close")
        (relay, transactions, age), = self.closed_lines()
        self.assertEqual(relay, "mx.example.test[127.0.0.2]:%d" % self.port)
        self.assertEqual(transactions, "2")
        self.assertGreaterEqual(float(age), 2.4)
        # The next message needs a new connection.
        self.submit("alice@sender.test", ["third@example.test"])
        wait_for(lambda: len(self.mx.messages) == 3, what="the third message")
        self.assertIsNot(self.mx.sessions[2], self.mx.sessions[1])
        self.assertEqual([m[1] for m in self.mx.messages],
                         [["first@example.test"], ["second@example.test"], ["third@example.test"]])
        wait_for(lambda: self.d.log().count(": removed") == 3, what="three removals")

    def test_a_large_message_is_streamed_whole(self):
        line = b"0123456789" * 7 + b"ab\r\n"
        body = b"Subject: big\r\n\r\n" + line * 70000 + b".starts with a dot\r\n"  # about 5.6 MB
        with __import__("smtplib").SMTP("127.0.0.1", self.d.port, timeout=30) as s:
            s.sendmail("alice@sender.test", ["big@example.test"], body)
        wait_for(lambda: len(self.mx.messages) == 1, timeout=60, what="the large message")
        content = self.mx.messages[0][2]
        self.assertTrue(content.endswith(line * 3 + b".starts with a dot\r\n"), content[-200:])
        self.assertEqual(content.count(line), 70000)
        self.assertIn(b"\r\nSubject: big\r\n", content)


class DroppedConnection(Delivery):
    zone = CACHE_ZONE

    def setUp(self):
        super().setUp()
        self.oneshot = OneShotServer("127.0.0.10", self.port)

    def tearDown(self):
        self.oneshot.stop()
        super().tearDown()

    def test_a_kept_connection_that_was_dropped_costs_no_deferral(self):
        for i in range(3):
            self.submit("alice@sender.test", ["r%d@oneshot.test" % i])
            wait_for(lambda: len(self.oneshot.messages) == i + 1, what="message %d" % i)
            time.sleep(0.2)  # the connection is idle in the cache when the next one comes
        log = self.d.log()
        self.assertNotIn("status=deferred", log)
        self.assertEqual(log.count("status=sent"), 3)
        # each message on its own connection: the kept one failed at MAIL FROM
        self.assertEqual([n for n, _ in self.oneshot.messages], [1, 2, 3])
        self.assertEqual(self.oneshot.connections, 3)
        wait_for(lambda: self.d.log().count(": removed") == 3, what="three removals")


class NextMxAfterARefusal(Delivery):
    zone = CACHE_ZONE

    def setUp(self):
        super().setUp()
        self.first = OneShotServer("127.0.0.11", self.port, hang_up_at_data=True)

    def tearDown(self):
        self.first.stop()
        super().tearDown()

    def test_the_next_mx_gets_only_the_recipients_still_open(self):
        self.submit("alice@sender.test", ["ok@twomx.test", "refused@twomx.test"])
        wait_for(lambda: len(self.mx.messages) == 1, what="delivery by the second MX")
        wait_for(lambda: len(self.bounce_mx.messages) == 1, what="the bounce for the refused one")
        # the first MX refused one recipient, accepted the other, then hung up at DATA
        self.assertEqual(self.first.rcpts, [b"RCPT TO:<ok@twomx.test>", b"RCPT TO:<refused@twomx.test>"])
        # the second MX is offered only the recipient without an answer
        self.assertEqual(self.mx.messages[0][1], ["ok@twomx.test"])
        log = self.d.log()
        self.assertRegex(log, r"to=<ok@twomx\.test> relay=mx\.example\.test\[127\.0\.0\.2\]:\d+ .*status=sent")
        self.assertRegex(log, r"to=<refused@twomx\.test> relay=mx1\.twomx\.test\[127\.0\.0\.11\]:\d+ "
                              r".*dsn=5\.1\.1 status=bounced")
        self.assertIn(b"refused@twomx.test", self.bounce_mx.messages[0][2])


if __name__ == "__main__":
    unittest.main()
