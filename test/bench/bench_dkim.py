"""bench_dkim.py — the keys of the "Sluice with dual signing" row and the
proof that its figure is one of signed mail (bench.py; docs/performance.md).

Rules:
  - The keys are made here with the openssl CLI (one RSA-2048, one Ed25519)
    into the run's directory, mode 0600 and never readable by others, so
    the row needs nothing from sluicectl.
  - The check looks at messages as the sink received them: each must carry
    one DKIM-Signature per key (d= the load's From domain, s= the key's
    selector), and with python3-dkim (dkimpy) each signature must verify
    against the key's public record, served by a stub instead of DNS.
  - The check only reports; bench.py labels the row "(not signed!)" when it
    fails, so an unsigned figure can never pass for a signed one.
"""

import base64
import os
import re
import subprocess

OPENSSL = "/usr/bin/openssl"

# (selector, openssl genpkey arguments, k= of the DNS record)
KEY_KINDS = [
    ("bench-rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "rsa"),
    ("bench-ed", ["-algorithm", "ED25519"], "ed25519"),
]
# An Ed25519 SubjectPublicKeyInfo in DER is this 12-octet prefix and the
# 32-octet key; DKIM publishes the key alone (RFC 8463 §4).
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


class DkimKeyError(Exception):
    pass


def make_keys(directory, domain):
    """Makes both keys under directory (created 0700); returns one dict per
    key: domain, selector, private_key (path), k, p (the record's values)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    keys = []
    for selector, genpkey, k in KEY_KINDS:
        path = os.path.join(directory, "%s.%s.key" % (domain, selector))
        # umask 077 in the child: the file is never readable by others, not
        # even between its creation and the chmod below.
        r = subprocess.run([OPENSSL, "genpkey"] + genpkey + ["-out", path], capture_output=True,
                           timeout=120, preexec_fn=lambda: os.umask(0o077))
        if r.returncode != 0:
            raise DkimKeyError("openssl genpkey %s failed: %s" % (" ".join(genpkey), r.stderr.decode()))
        os.chmod(path, 0o600)
        r = subprocess.run([OPENSSL, "pkey", "-in", path, "-pubout", "-outform", "DER"],
                           capture_output=True, timeout=60)
        if r.returncode != 0 or not r.stdout:
            raise DkimKeyError("openssl pkey -pubout %s failed: %s" % (path, r.stderr.decode()))
        der = r.stdout
        if k == "ed25519":
            if not der.startswith(ED25519_SPKI_PREFIX) or len(der) != len(ED25519_SPKI_PREFIX) + 32:
                raise DkimKeyError("unexpected Ed25519 public key from openssl (%d octets)" % len(der))
            der = der[len(ED25519_SPKI_PREFIX):]
        keys.append({"domain": domain, "selector": selector, "private_key": path, "k": k,
                     "p": base64.b64encode(der).decode()})
    return keys


def dkim_config(keys):
    """The [[dkim]] tables for sluice.toml."""
    lines = []
    for key in keys:
        lines += ["[[dkim]]", 'domain = "%s"' % key["domain"], 'selector = "%s"' % key["selector"],
                  'private_key = "%s"' % key["private_key"]]
    return lines


# smtp-sink -d writes its own lines above the message as received
# (smtp-sink(1), DUMP FILE FORMAT), and ends the file with an empty line.
SINK_LINE = re.compile(rb"^X-(Client-Addr|Client-Proto|Helo-Args|Mail-Args|Rcpt-Args):")


def message_of_dump(data):
    """The message from one smtp-sink dump file, with CRLF line ends."""
    lines = data.split(b"\n")
    while lines and SINK_LINE.match(lines[0]):
        lines.pop(0)
    return b"".join(line.rstrip(b"\r") + b"\r\n" for line in lines)


def signature_tags(field_value):
    """d= and s= of a DKIM-Signature value (unfolded), lower case."""
    tags = {}
    for part in field_value.split(b";"):
        name, _, value = part.partition(b"=")
        tags[name.strip().lower()] = re.sub(rb"\s+", b"", value).lower()
    return tags.get(b"d", b"").decode(errors="replace"), tags.get(b"s", b"").decode(errors="replace")


def signature_fields(message):
    """The values of the message's DKIM-Signature fields, unfolded."""
    header = message.split(b"\r\n\r\n", 1)[0]
    fields = re.split(rb"\r\n(?![ \t])", header)
    return [f.split(b":", 1)[1].replace(b"\r\n", b"") for f in fields
            if f.lower().startswith(b"dkim-signature:")]


def check_messages(messages, keys):
    """How many of `messages` carry a signature by every key, and (with
    dkimpy) how many have every such signature verify. Returns a dict:
    messages, signed_by_all, verified_by_all (None without dkimpy), signed
    (True only when every message is signed by every key, and verified when
    dkimpy is there), problem (the first thing wrong, or "")."""
    try:
        import dkim
    except ImportError:
        dkim = None
    records = {("%s._domainkey.%s." % (k["selector"], k["domain"])).lower():
               "v=DKIM1; k=%s; p=%s" % (k["k"], k["p"]) for k in keys}

    def txt(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        found = records.get(name.lower().rstrip(".") + ".")
        return found.encode() if found else None

    wanted = {(k["domain"], k["selector"]) for k in keys}
    signed_by_all = verified_by_all = 0
    problem = ""
    for i, msg in enumerate(messages):
        sigs = signature_fields(msg)
        pairs = [signature_tags(s) for s in sigs]
        if not wanted <= set(pairs):
            problem = problem or "message %d carries %d DKIM-Signature field(s) %s, wants %s" % (
                i + 1, len(sigs), sorted(pairs), sorted(wanted))
            continue
        signed_by_all += 1
        if dkim is None:
            continue
        d = dkim.DKIM(msg)
        good = True
        for idx, pair in enumerate(pairs):
            if pair in wanted:
                try:
                    ok = d.verify(idx=idx, dnsfunc=txt)
                except dkim.DKIMException as e:
                    ok = False
                    problem = problem or "message %d: %s signature: %s" % (i + 1, pair[1], e)
                if not ok:
                    good = False
                    problem = problem or "message %d: the %s signature does not verify" % (i + 1, pair[1])
        verified_by_all += good
    n = len(messages)
    signed = n > 0 and signed_by_all == n and (dkim is None or verified_by_all == n)
    if n == 0:
        problem = "no message was received"
    return {"messages": n, "signed_by_all": signed_by_all,
            "verified_by_all": verified_by_all if dkim else None, "signed": signed, "problem": problem}


def check_dump_dir(directory, keys):
    messages = []
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            messages.append(message_of_dump(f.read()))
    return check_messages(messages, keys)
