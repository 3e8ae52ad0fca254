"""A tiny SMTP sink for the contacts tests and benchmark.

Usage: python3 smtp_sink.py PORT DIR [raw]
Accepts every message on 127.0.0.1:PORT and writes it to DIR as one JSON
file (message_id, to, subject, text, html), decoded with the standard
email package. Prints "ready" once listening; runs until killed.
"""
import email
import email.policy
import json
import os
import sys
import threading
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, outdir, raw):
        self.outdir = outdir
        self.raw = raw
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.raw:
            # Benchmark mode: keep the raw message, skip MIME parsing.
            self.count += 1
            with open(os.path.join(self.outdir, "%08d.eml" % self.count), "wb") as f:
                f.write(envelope.original_content or envelope.content)
            return "250 OK"
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        record = {
            "message_id": str(message.get("Message-ID", "")),
            "to": str(message.get("To", "")),
            "from": str(message.get("From", "")),
            "subject": str(message.get("Subject", "")),
            "rcpt": list(envelope.rcpt_tos),
            "text": text.get_content() if text is not None else "",
            "html": html.get_content() if html is not None else "",
        }
        name = os.path.join(self.outdir, uuid.uuid4().hex)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name + ".json")
        return "250 OK"


def main():
    port = int(sys.argv[1])
    outdir = sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    raw = len(sys.argv) > 3 and sys.argv[3] == "raw"
    controller = Controller(Sink(outdir, raw), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
