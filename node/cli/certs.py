"""`mq9 dev-certs DIR`: a CA, a server certificate and a client certificate for trying TLS.

Made with the `cryptography` library (already a dependency: PySyncObj's encryption
uses it): ECDSA P-256 keys, a CA valid for 30 days, a server certificate for the given
names (`localhost`, `127.0.0.1` and `::1` by default) and a client certificate whose
subject is `CN=<client name>`. Files: ca.pem, server.pem, server-key.pem, client.pem,
client-key.pem (keys readable by the owner only). For development and tests; in
production use your own CA (docs/security.md shows the openssl commands).
"""

from __future__ import annotations

import datetime
import ipaddress
import os

import typer


def make(directory: str, names: list[str], client: str = "mq9-client", days: int = 30) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    until = now + datetime.timedelta(days=days)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mq9 dev"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("mq9 dev CA")).issuer_name(name("mq9 dev CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage, sans: list[str]):
        leaf_key = key()
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(until)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            alt = []
            for san in sans:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(san)))
                except ValueError:
                    alt.append(x509.DNSName(san))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), leaf_key

    server, server_key = leaf(names[0], ExtendedKeyUsageOID.SERVER_AUTH, names)
    client_cert, client_key = leaf(client, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    files = {}

    def write(filename: str, data: bytes, private: bool = False) -> None:
        path = os.path.join(directory, filename)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        files[filename] = path

    pem = serialization.Encoding.PEM
    for filename, cert in (("ca.pem", ca), ("server.pem", server), ("client.pem", client_cert)):
        write(filename, cert.public_bytes(pem))
    for filename, k in (("server-key.pem", server_key), ("client-key.pem", client_key)):
        write(filename, k.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), True)
    return files


def register(app: typer.Typer) -> None:
    @app.command(name="dev-certs")
    def dev_certs(
        directory: str = typer.Argument("./certs", help="Where to write ca.pem, server.pem, server-key.pem, client.pem, client-key.pem."),
        name: list[str] = typer.Option(["localhost", "127.0.0.1", "::1"], "--name",
                                       help="Host names and addresses the server certificate is for (repeat)."),
        client: str = typer.Option("mq9-client", "--client", help="Common name of the client certificate."),
        days: int = typer.Option(30, "--days", help="How long the certificates are valid."),
    ) -> None:
        """Make a development CA with a server and a client certificate, for --tls-cert/--tls-key/--tls-ca."""
        files = make(directory, name, client, days)
        for path in files.values():
            typer.echo(path)
