"""A throwaway certificate authority for tests, made with the openssl CLI.

    ca = TestCa(workdir)                     # ca.pem / ca.key in workdir
    cert, key = ca.issue("relay", dns=["relay.example.test"], ips=["127.0.0.2"])
    cert, key = self_signed(workdir, "attacker", "attacker.invalid")

Keys are ECDSA P-256 (fast to make); certificates are valid from now for two
days. Point sluiced's `delivery.ca_file` at `ca.pem` to trust what `issue()`
makes; nothing made here is trusted by the system bundle.
"""
import os
import subprocess

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, capture_output=True, timeout=60)


def _san(dns=(), ips=()):
    return ",".join(["DNS:" + d for d in dns] + ["IP:" + i for i in ips])


class TestCa:
    def __init__(self, workdir, name="Sluice Test CA"):
        self.dir = workdir
        self.cert = os.path.join(workdir, "ca.pem")
        self.key = os.path.join(workdir, "ca.key")
        _openssl(["req", "-x509"] + _EC + ["-days", "2", "-subj", "/CN=" + name,
                  "-keyout", self.key, "-out", self.cert,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], workdir)

    def issue(self, stem, dns=(), ips=(), cn=None):
        """A leaf certificate signed by this CA with the given SAN entries:
        returns (cert_path, key_path)."""
        cert = os.path.join(self.dir, stem + ".pem")
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        ext = os.path.join(self.dir, stem + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n")
            if dns or ips:
                f.write("subjectAltName=%s\n" % _san(dns, ips))
        subject = cn or (list(dns) + list(ips) + [stem])[0]
        _openssl(["req", "-new"] + _EC + ["-subj", "/CN=" + subject, "-keyout", key, "-out", csr], self.dir)
        _openssl(["x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-set_serial",
                  str(abs(hash((stem, cert))) % (1 << 62) + 1), "-days", "2", "-sha256",
                  "-extfile", ext, "-out", cert], self.dir)
        return cert, key


def self_signed(workdir, stem, name):
    """A self-signed certificate for DNS name `name` (CN and SAN): returns
    (cert_path, key_path)."""
    cert = os.path.join(workdir, stem + ".pem")
    key = os.path.join(workdir, stem + ".key")
    _openssl(["req", "-x509"] + _EC + ["-days", "2", "-subj", "/CN=" + name,
              "-addext", "subjectAltName=DNS:" + name, "-keyout", key, "-out", cert], workdir)
    return cert, key
