"""Delivery end to end: a message larger than the receiving server's SIZE
(RFC 1870) is not sent. The client session reports it as too big for that
server, and queue/policy bounces it at once with 552 5.3.4 without trying
the next MX; a smaller message still goes to the same server.

Set-up as in test_delivery.py (fake DNS, the sinks on 127.0.0.2/.3); here
big.test's first MX (127.0.0.10) declares SIZE 4000, its second MX
(127.0.0.11) would take anything and must never be asked.
"""
import time
import unittest

from aiosmtpd.controller import Controller

from test_delivery import ZONE, Delivery, SinkHandler, wait_for
from test_delivery_more import log_line

SIZE_ZONE = ZONE + """\
big.test.          300 IN MX 10 mx1.big.test.
big.test.          300 IN MX 20 mx2.big.test.
mx1.big.test.      300 IN A 127.0.0.10
mx2.big.test.      300 IN A 127.0.0.11
"""


class TooBig(Delivery):
    zone = SIZE_ZONE

    def setUp(self):
        super().setUp()
        self.limited = SinkHandler()
        self.spare = SinkHandler()
        self.c3 = Controller(self.limited, hostname="127.0.0.10", port=self.port, data_size_limit=4000)
        self.c4 = Controller(self.spare, hostname="127.0.0.11", port=self.port)
        self.c3.start()
        self.c4.start()

    def tearDown(self):
        super().tearDown()
        self.c3.stop()
        self.c4.stop()

    def test_over_the_servers_size_bounces_552_5_3_4_without_the_next_mx(self):
        t0 = time.time()
        big = "Subject: big\r\nMessage-ID: <big@sender.test>\r\n\r\n" + ("x" * 70 + "\r\n") * 100
        self.submit("alice@sender.test", ["bob@big.test"], body=big)
        wait_for(lambda: self.bounce_mx.messages, what="the bounce at the sender's MX")
        self.assertLess(time.time() - t0, 5)  # at once, not after retries
        mail_from, rcpts, content = self.bounce_mx.messages[0]
        self.assertIn(mail_from, ("", "<>"))
        self.assertEqual(rcpts, ["alice@sender.test"])
        self.assertIn(b"Final-Recipient: rfc822; bob@big.test", content)
        self.assertIn(b"Status: 5.3.4", content)
        self.assertIn(b"552 5.3.4 message too big for mx1.big.test[127.0.0.10]", content)
        wait_for(lambda: log_line(self.d.log(), "bob@big.test", "bounced"), what="the bounce log line")
        m = log_line(self.d.log(), "bob@big.test", "bounced")
        self.assertEqual(m.group(1), "mx1.big.test[127.0.0.10]:%d" % self.port)
        self.assertEqual(m.group(2), "5.3.4")
        self.assertIn("over its limit 4000", m.group(3))
        # Nothing was sent to either MX: not the content, not even MAIL FROM.
        self.assertEqual(self.limited.messages, [])
        self.assertEqual(self.spare.messages, [])
        self.assertIsNone(log_line(self.d.log(), "bob@big.test", "deferred"))

        # A message within the limit goes to the same server.
        self.submit("alice@sender.test", ["carol@big.test"])
        wait_for(lambda: self.limited.messages, what="delivery of a small message")
        self.assertEqual(self.limited.messages[0][1], ["carol@big.test"])
        self.assertEqual(self.spare.messages, [])


if __name__ == "__main__":
    unittest.main()
