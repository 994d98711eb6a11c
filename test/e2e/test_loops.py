"""Mail loops, the delivery side (docs/delivery.md, "Mail loops"): delivery
never connects to Sluice itself.

Set-up (see test_delivery.py): sluiced listens on 127.0.0.1 at the port the
sinks use, and delivery.port is that same port, so an MX pointing at
127.0.0.1 is Sluice's own listener. The aiosmtpd sinks are on 127.0.0.2 (the
recipients' MX) and 127.0.0.3 (the sender's MX, where bounces go); scripted
MTAs whose greeting or EHLO reply is chosen by the test on 127.0.0.4-5, and
for the relayhost on 127.0.0.1 at another port. WildcardListener has its
own set-up: sluiced on 0.0.0.0, the bounce sink on [::1], at one port.

On the code before the loop check, LoopsBack loops: sluiced delivers the
message to itself again and again (every copy is a new "accept" in its
log) and the spool grows until stopped; the test bounds that with the
count of accepted messages.
"""
import shutil
import socket
import tempfile
import unittest

from aiosmtpd.controller import Controller

from harness import Sluiced, ThreadedServer, free_port
from test_delivery import ZONE, Delivery, FakeDns, SinkHandler, wait_for

HOSTNAME = "mx.sluice.test"  # the harness's hostname

LOOP_ZONE = ZONE + """\
sluice.test.         300 IN MX 10 mx.sluice.test.
mx.sluice.test.      300 IN A 127.0.0.1
loop.test.           300 IN MX 10 mx.loop.test.
mx.loop.test.        300 IN A 127.0.0.1
implicit-loop.test.  300 IN A 127.0.0.1
backup-self.test.    300 IN MX 10 mx.example.test.
backup-self.test.    300 IN MX 20 mx.sluice.test.
down-self.test.      300 IN MX 10 dead.backup.test.
down-self.test.      300 IN MX 20 mx.sluice.test.
down-self.test.      300 IN MX 30 mx.example.test.
neighbour.test.      300 IN MX 10 mx.neighbour.test.
mx.neighbour.test.   300 IN A 127.0.0.4
ehlo-self.test.      300 IN MX 10 twin.ehlo-self.test.
ehlo-self.test.      300 IN MX 20 mx.example.test.
twin.ehlo-self.test. 300 IN A 127.0.0.5
ehlo-only.test.      300 IN MX 10 twin.ehlo-self.test.
"""


class ScriptedMta(ThreadedServer):
    """A small SMTP server on host:port that greets with `greeting_name` and
    answers EHLO with `ehlo_name`; records every command and message."""

    def __init__(self, host, port, greeting_name, ehlo_name):
        self.greeting_name, self.ehlo_name = greeting_name, ehlo_name
        self.commands = []
        self.messages = []
        super().__init__(host, port)

    def serve(self, conn, number):
        conn.settimeout(20)
        f = conn.makefile("rb")
        data = None
        try:
            conn.sendall(b"220 %s ESMTP\r\n" % self.greeting_name.encode())
            while True:
                line = f.readline()
                if not line:
                    return
                if data is not None:
                    if line == b".\r\n":
                        self.messages.append(b"".join(data))
                        data = None
                        conn.sendall(b"250 2.0.0 queued\r\n")
                    else:
                        data.append(line)
                    continue
                self.commands.append(line.strip().decode("ascii", "replace"))
                cmd = line[:4].upper()
                if cmd in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-%s hello\r\n250 8BITMIME\r\n" % self.ehlo_name.encode())
                elif cmd == b"DATA":
                    data = []
                    conn.sendall(b"354 go ahead\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        finally:
            conn.close()


class LoopCase(Delivery):
    """Sluice's relay listener on 127.0.0.1 at delivery.port."""
    zone = LOOP_ZONE

    def make_daemon(self, extra, dns_servers):
        d = Sluiced(extra=extra, dns_servers=dns_servers,
                    listeners=[("127.0.0.1:%d" % self.port, "relay")])
        d.port = self.port  # submit() talks to it there
        return d

    def accepted(self):
        """Messages sluiced accepted over SMTP: ours, and each copy a loop makes."""
        return self.d.log().count(" accept conn=")

    def setUp(self):
        super().setUp()
        self.probes = self.d.log().count(" connect from=")  # the harness's wait for the listener

    def connections_in(self):
        """Connections to sluiced since it started listening."""
        return self.d.log().count(" connect from=") - self.probes

    def assert_spool_empty_after(self, removals):
        wait_for(lambda: self.d.log().count(": removed") >= removals, what="%d removals" % removals)
        self.d.stop()
        self.assertEqual(self.d.spool_messages(body=False), [])


class LoopsBack(LoopCase):
    def test_mx_pointing_at_myself_bounces_with_5_4_6(self):
        # cron@sluice.test: the host's own domain, its MX is this host;
        # bob@loop.test: any domain whose MX is this host.
        self.submit("alice@sender.test", ["cron@sluice.test", "bob@loop.test"])
        # Bounded either way: on the old code sluiced accepts copy after copy.
        wait_for(lambda: len(self.bounce_mx.messages) >= 2 or self.accepted() > 30, timeout=20,
                 what="the bounces (or the loop)")
        self.assertEqual(self.accepted(), 1, "sluiced delivered to itself")
        # One bounce per destination (each is its own job).
        self.assertEqual(len(self.bounce_mx.messages), 2)
        contents = b"".join(m[2] for m in self.bounce_mx.messages)
        for mail_from, rcpts, content in self.bounce_mx.messages:
            self.assertEqual((mail_from, rcpts), ("<>", ["alice@sender.test"]))
            self.assertIn(b"Status: 5.4.6", content)
        self.assertIn(b"mail for sluice.test loops back to myself", contents)
        self.assertIn(b"mail for loop.test loops back to myself", contents)
        log = self.d.log()
        self.assertIn("to=<cron@sluice.test> relay=none", log)
        self.assertEqual(log.count("dsn=5.4.6 status=bounced"), 2)
        self.assertEqual(self.connections_in(), 1, "delivery connected to sluiced")
        self.assertEqual(self.mx.messages, [])
        self.assert_spool_empty_after(3)  # the message and its two bounces

    def test_implicit_mx_that_is_myself_bounces(self):
        self.submit("alice@sender.test", ["bob@implicit-loop.test"])
        wait_for(lambda: self.bounce_mx.messages or self.accepted() > 30, timeout=20,
                 what="the bounce (or the loop)")
        self.assertEqual(self.accepted(), 1)
        self.assertIn(b"mail for implicit-loop.test loops back to myself",
                      self.bounce_mx.messages[0][2])

    def test_a_backup_mx_that_is_myself_is_never_tried(self):
        # backup-self.test: MX 10 the sink, MX 20 this host.
        self.submit("alice@sender.test", ["eve@backup-self.test"])
        wait_for(lambda: self.mx.messages, what="delivery to the primary MX")
        # down-self.test: MX 10 refuses connections, MX 20 is this host, MX
        # 30 the sink: 20 and everything after it are dropped; the mail waits
        # for the primary instead of looping.
        self.submit("alice@sender.test", ["eve@down-self.test"])
        self.d.wait_log("to=<eve@down-self.test> relay=dead.backup.test[127.0.0.4]:%d" % self.port)
        log = self.d.log()
        self.assertIn("status=deferred (451 4.4.1 connect to dead.backup.test[127.0.0.4]", log)
        self.assertEqual(len(self.mx.messages), 1)
        self.assertEqual(self.accepted(), 2)
        self.assertEqual(self.connections_in(), 2)
        self.assertEqual(self.bounce_mx.messages, [])


class Neighbours(LoopCase):
    def setUp(self):
        super().setUp()
        # Greets with Sluice's hostname, but says who it is in its EHLO reply.
        self.neighbour = ScriptedMta("127.0.0.4", self.port, HOSTNAME, "mx.neighbour.test")
        # Names itself with Sluice's hostname in its EHLO reply.
        self.twin = ScriptedMta("127.0.0.5", self.port, "twin.ehlo-self.test", HOSTNAME.upper())

    def tearDown(self):
        self.neighbour.stop()
        self.twin.stop()
        super().tearDown()

    def test_a_neighbour_greeting_with_my_name_gets_the_mail(self):
        self.submit("alice@sender.test", ["carol@neighbour.test"])
        wait_for(lambda: self.neighbour.messages, what="delivery to the neighbour")
        self.d.wait_log("status=sent")
        log = self.d.log()
        self.assertIn("relay=mx.neighbour.test[127.0.0.4]:%d greets with my own hostname %s"
                      % (self.port, HOSTNAME), log)
        self.assertNotIn("4.4.6", log)

    def test_ehlo_reply_naming_me_defers_4_4_6_and_the_next_mx_gets_it(self):
        self.submit("alice@sender.test", ["dave@ehlo-self.test"])
        wait_for(lambda: self.mx.messages, what="delivery through the second MX")
        self.assertEqual(self.mx.messages[0][1], ["dave@ehlo-self.test"])
        self.d.wait_log("status=sent")
        log = self.d.log()
        self.assertRegex(log, r"warning: \S+: relay=twin\.ehlo-self\.test\[127\.0\.0\.5\]:%d replied to "
                              r"EHLO with my own hostname %s" % (self.port, HOSTNAME))
        self.assertEqual(self.twin.messages, [])
        self.assertFalse([c for c in self.twin.commands if c.upper().startswith("MAIL")])
        self.assertIn("QUIT", self.twin.commands)
        self.assert_spool_empty_after(1)

    def test_ehlo_reply_naming_me_with_no_other_mx_defers(self):
        self.submit("alice@sender.test", ["dave@ehlo-only.test"])
        self.d.wait_log("status=deferred")
        self.assertRegex(self.d.log(), r"to=<dave@ehlo-only\.test> relay=twin\.ehlo-self\.test"
                                       r"\[127\.0\.0\.5\]:\d+ delay=\S+ tls=\S+ dsn=4\.4\.6 status=deferred "
                                       r"\(451 4\.4\.6 mail loops back to myself at ")
        self.assertEqual(self.twin.messages, [])
        self.assertEqual(self.bounce_mx.messages, [])


class RelayhostIsMyself(LoopCase):
    relayhost = lambda self: "[127.0.0.1]:%d" % self.port

    def test_relayhost_that_is_myself_bounces(self):
        self.submit("alice@sender.test", ["carol@example.org"])
        # The bounce goes to the relayhost too, loops the same way and, with
        # the null sender, is dropped: two lines, no third message.
        wait_for(lambda: self.d.log().count("dsn=5.4.6 status=bounced") >= 2 or self.accepted() > 30,
                 timeout=20, what="the bounces (or the loop)")
        self.assertEqual(self.accepted(), 1, "sluiced relayed to itself")
        self.assertIn("to=<carol@example.org> relay=none", self.d.log())
        self.assertIn("(554 5.4.6 mail for 127.0.0.1 loops back to myself)", self.d.log())
        self.assertEqual(self.connections_in(), 1)
        self.assert_spool_empty_after(2)


class RelayhostNeighbour(LoopCase):
    """A relayhost on Sluice's own address at another port, greeting with
    Sluice's name: not myself."""
    relayhost = lambda self: "[127.0.0.1]:%d" % self.relay_port

    def setUp(self):
        self.relay_port = free_port()
        self.relay = ScriptedMta("127.0.0.1", self.relay_port, HOSTNAME, "relay.sluice.test")
        super().setUp()

    def tearDown(self):
        super().tearDown()
        self.relay.stop()

    def test_relayhost_at_another_port_gets_the_mail(self):
        self.submit("alice@sender.test", ["carol@example.org"])
        wait_for(lambda: self.relay.messages, what="the relayhost to get the message")
        self.d.wait_log("status=sent")
        self.assertIn("greets with my own hostname", self.d.log())
        self.assertEqual(self.accepted(), 1)


def interface_address():
    """A non-loopback IPv4 address of this machine, or None (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.123", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


class WildcardListener(Delivery):
    """sluiced on 0.0.0.0 at delivery.port: every local IPv4 address at that
    port is myself (any 127.x, the interfaces' addresses), but not [::1] —
    an IPv6 listener is another socket; the sender's MX (where bounces go)
    is an aiosmtpd sink there."""

    def setUp(self):  # not Delivery's: its sinks would hold the port on 127.0.0.2-3
        self.work = tempfile.mkdtemp(prefix="sluice-wild-")
        for _ in range(50):
            self.port = free_port("::1")
            try:
                with socket.socket() as probe:
                    probe.bind(("0.0.0.0", self.port))
                break
            except OSError:
                continue
        self.ifaddr = interface_address()
        zone = ZONE.replace("mx.sender.test.    300 IN A 127.0.0.3",
                            "mx.sender.test.    300 IN AAAA ::1")
        assert "AAAA ::1" in zone
        zone += "wild.test.      300 IN MX 10 mx.wild.test.\nmx.wild.test.   300 IN A 127.0.0.9\n"
        if self.ifaddr:
            zone += "iface.test.     300 IN MX 10 mx.iface.test.\nmx.iface.test.  300 IN A %s\n" % self.ifaddr
        self.dns = FakeDns(self.work, zone)
        self.bounce_mx = SinkHandler()
        self.sink = Controller(self.bounce_mx, hostname="::1", port=self.port)
        self.sink.start()
        self.d = Sluiced(extra='[delivery]\nport = %d\n' % self.port,
                         dns_servers=["127.0.0.1:%d" % self.dns.port],
                         listeners=[("0.0.0.0:%d" % self.port, "relay")])
        self.d.start()

    def tearDown(self):
        failed = self._failed()
        self.d.stop()
        if failed:
            print("---- sluiced log ----\n" + self.d.log()[-8000:])
        self.sink.stop()
        self.dns.stop()
        shutil.rmtree(self.d.dir, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def test_any_local_address_at_the_port_is_myself(self):
        rcpts = ["x@wild.test"] + (["y@iface.test"] if self.ifaddr else [])
        import smtplib
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
            s.sendmail("alice@sender.test", rcpts, "Subject: loop\r\n\r\nbody\r\n")
        accepted = lambda: self.d.log().count(" accept conn=")
        wait_for(lambda: len(self.bounce_mx.messages) >= len(rcpts) or accepted() > 30, timeout=20,
                 what="the bounces (or the loop)")
        self.assertEqual(accepted(), 1, "sluiced delivered to itself")
        contents = b"".join(m[2] for m in self.bounce_mx.messages)
        self.assertIn(b"mail for wild.test loops back to myself", contents)
        if self.ifaddr:
            self.assertIn(b"mail for iface.test loops back to myself", contents)
        self.d.wait_log("relay=mx.sender.test[::1]:%d" % self.port)


if __name__ == "__main__":
    unittest.main()
