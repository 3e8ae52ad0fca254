#!/usr/bin/env python3
"""Writes the committed seed corpus (fuzz/corpus/<target>/): one small valid
input of each kind per target, so every run starts from inputs that reach
deep into the parsers. Run again after changing a target's input format:
python3 fuzz/seeds/make.py (needs the `cryptography` package for the
Ed25519 JWT and `ssh-keygen` for the SSH keys)."""

import base64, json, os, shutil, subprocess, tempfile, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")
UUID = "0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9d"
ACCOUNT = "0195f3a2-7c1e-7d3a-9b2c-4e5f6a7b8c9e"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, value):
    """A protobuf field: bytes/str/nested (length-delimited), bool/int (varint)."""
    if isinstance(value, bool) or isinstance(value, int):
        return varint(number << 3) + varint(int(value) & (2**64 - 1))
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def message(*fields):
    return b"".join(field(n, v) for n, v in fields)


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(number, width):
    digits = ""
    while number:
        number, rem = divmod(number, 62)
        digits = BASE62[rem] + digits
    return digits.rjust(width, "0")


def api_token():
    body = base62(int.from_bytes(bytes(range(32)), "big"), 43)
    checksum = base62(zlib.crc32(body.encode()), 6)
    return f"tny_{body}{checksum}"


def jwt():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes([7] * 32))
    header = json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": "fuzz-key"}).encode()
    input = f"{b64u(header)}.{b64u(CLAIMS)}"
    return f"{input}.{b64u(key.sign(input.encode()))}"


CLAIMS = json.dumps(
    {
        "iss": "tenancy",
        "aud": "tenancy-portal",
        "sub": UUID,
        "sid": UUID,
        "acc": ACCOUNT,
        "iat": 1_800_000_000,
        "exp": 4_102_444_800,
        "rev": 7,
        "auth_time": 1_800_000_000,
        "amr": ["pwd", "otp"],
        "mfa": True,
        "staff": False,
    }
).encode()


def ssh_keys():
    folder = tempfile.mkdtemp()
    keys = {}
    for kind, bits in [("ed25519", None), ("ecdsa", "256"), ("rsa", "2048")]:
        path = os.path.join(folder, kind)
        args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"ann@{kind}", "-f", path]
        if bits:
            args += ["-b", bits]
        subprocess.run(args, check=True)
        keys[kind] = open(path + ".pub").read().strip()
    shutil.rmtree(folder)
    return keys


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    token = jwt()
    keys = ssh_keys()

    write("jwt", "token", b"\x00" + token.encode())
    write("jwt", "claims", b"\x01" + CLAIMS)
    write("jwt", "header-and-claims", b"\x02" + b'{"alg":"EdDSA","kid":"fuzz-key"}\n' + CLAIMS)

    write("tokens", "api-token", api_token())
    write("tokens", "refresh-token", "rt_" + b64u(bytes(range(32))))

    write("authorization", "bearer-jwt", f"Bearer {token}\n203.0.113.7, 10.0.0.2")
    write("authorization", "bearer-api-token", f"bearer {api_token()}\n2001:db8::1\n[2001:db8::2]:443")

    principal = message(
        (1, UUID), (2, ACCOUNT), (3, 2), (4, UUID), (6, 1), (7, "pwd"), (7, "otp"),
        (8, "203.0.113.7"), (9, "req-1"), (11, 1_800_000_000), (12, 1_800_000_010_000),
        (13, "curl/8"), (15, "/tenancy.identity.v1.IdentityService/GetMe"), (16, bytes(range(16))),
    )
    write("principal", "signed", b"\x01" + principal)
    sig = "A" * 43
    write("principal", "metadata", b"\x00" + base64.b64encode(principal).rstrip(b"=") + b"\n" + sig.encode())

    for kind, line in keys.items():
        write("ssh_key", kind, line)

    write("allowlist", "v4", bytes([0, 203, 0, 113, 7]) + b"203.0.113.0/24\n10.0.0.0/8\n192.0.2.1")
    write("allowlist", "v6", bytes([1]) + bytes(16) + b"2001:db8::/32\n::ffff:198.51.100.0/120\n::1")

    write("page_token", "cursor", b64u(json.dumps({"f": "abc", "t": 1_800_000_000_000, "id": UUID}).encode()))
    write("page_token", "tuple", b64u(json.dumps(["2024-01-01", 42]).encode()))

    identity = {
        "sign-up": (0, message((1, "ann@example.com"), (2, "correct horse battery"), (3, "Ann Example"))),
        "login": (1, message((1, "ann@example.com"), (2, "correct horse battery"), (3, ACCOUNT))),
        "set-code-word": (5, message((1, "blue  Harbour"))),
        "create-api-token": (7, message((1, "deploy"), (3, True))),
        "add-ssh-key": (8, message((1, "laptop"), (2, keys["ed25519"]))),
        "complete-mfa-totp": (10, message((1, "challenge"), (2, "123 456"))),
        "complete-mfa-recovery": (10, message((1, "challenge"), (3, "abcde-fghij"))),
        "introspect": (12, message((1, api_token()))),
        "list-login-events": (13, message((1, 50), (2, b64u(b'["x",1]')), (5, 1), (6, 2))),
        "batch-get-users": (21, message((1, UUID), (1, ACCOUNT))),
    }
    for name, (index, body) in identity.items():
        write("identity_request", name, bytes([index]) + body)

    account = message((3, "Acme"), (4, "Acme B.V."), (5, "NL"), (6, "NL123456789B01"),
                      (8, message((1, "Main St 1"), (2, "Amsterdam"), (3, "1011 AA"), (5, "NL"))))
    accounts = {
        "create-account": (0, message((1, account), (2, "req-1"))),
        "update-security-settings": (2, message((1, message((1, ACCOUNT), (2, True), (5, "203.0.113.0/24"), (5, "2001:db8::/32"))))),
        "invite-member": (3, message((1, "bob@example.com"), (2, 1))),
        "add-member": (4, message((1, "bob@example.com"), (2, "Bob"), (3, 1))),
        "register-service": (5, message((1, message((3, "vps"), (4, "web-1"), (5, "prod"), (5, "eu-west"))))),
        "list-members": (7, message((1, 20), (2, b64u(b'{"f":"x","c":["a",1]}')), (4, 1))),
    }
    for name, (index, body) in accounts.items():
        write("account_request", name, bytes([index]) + body)

    contact = message((3, "Ann Example"), (4, "ann@example.com"), (8, "+31201234567"), (9, "billing only"), (10, 1), (10, 2))
    contacts = {
        "create-contact": (0, message((1, contact), (2, "req-1"))),
        "list-contacts": (2, message((1, 10), (2, b64u(b"12")))),
        "send-email": (3, message((1, "req-1"), (2, message((1, "ann@example.com"), (2, "Ann"))), (3, 1),
                                  (4, message((1, "link"), (2, "https://example.com/x"))), (5, ACCOUNT))),
    }
    for name, (index, body) in contacts.items():
        write("contacts_request", name, bytes([index]) + body)

    support = {
        "create-ticket": (0, message((1, "Disk full"), (2, "My disk is full.\n"), (4, 2), (5, 1), (6, UUID), (7, "req-1"))),
        "add-message": (1, message((1, UUID), (2, "Thanks!"), (3, "req-2"))),
        "update-ticket-cc": (3, message((1, UUID), (2, UUID), (3, ACCOUNT))),
        "list-tickets": (4, message((1, 1), (1, 2), (8, 25), (9, b64u(b'{"f":"h","t":1,"id":"x"}')))),
    }
    for name, (index, body) in support.items():
        write("support_request", name, bytes([index]) + body)


if __name__ == "__main__":
    main()
