#!/usr/bin/env python3
"""Passkeys in a real browser: Debian's chromium, headless, with a virtual
authenticator (WebDriver through chromium-driver and selenium), against a
running `tenancy serve`.

A tiny portal backend (the relay below, test code only) serves a page
(portal.html) and relays between it and the gateway over gRPC. The test
signs a user up (the verification link from the dev mailer's log), logs in
with the password, registers a passkey in the browser, logs out, logs in
passwordless with the passkey, then with the password plus the passkey as
second factor. Each step asserts its result; the first failure ends the run
with exit status 1.

The page's origin must be one of the server's `auth.webauthn_origins` and
its host the rp id (`auth.webauthn_rp_id`), e.g. `localhost` and
`http://localhost:PORT` (WebAuthn treats http://localhost as secure).

Run (see .ci/run; stubs as for tests/portal):
    PYTHONPATH=STUBS python tests/browser/passkey_browser.py --gateway HOST:PORT \
        --log tenancy.log --port PORT
"""

import argparse
import json
import pathlib
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.virtual_authenticator import (
    Protocol,
    Transport,
    VirtualAuthenticatorOptions,
)

from tenancy.identity.v1 import (
    identity_service_pb2 as identity,
    identity_service_pb2_grpc as identity_grpc,
)

PASSWORD = "correct horse battery staple"
PAGE = pathlib.Path(__file__).with_name("portal.html").read_bytes()


class Failed(Exception):
    """A step did not do what it should."""


def check(condition, what):
    if not condition:
        raise Failed(what)


def step(what):
    print(f"ok: {what}", flush=True)


def as_dict(message):
    return json_format.MessageToDict(message)


class Relay(BaseHTTPRequestHandler):
    """The portal backend: page in, gRPC out. No state of its own."""

    stub = None

    def log_message(self, *_):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
        bearer = [("authorization", f"Bearer {body.get('accessToken', '')}")]
        s = self.stub
        try:
            if self.path == "/api/login":
                r = s.Login(identity.LoginRequest(email=body["email"], password=body["password"]))
                if r.HasField("session"):
                    return self.answer(200, {"session": as_dict(r.session)})
                c = r.mfa_challenge
                return self.answer(200, {
                    "challengeToken": c.challenge_token,
                    "passkeyRequestOptionsJson": c.passkey_request_options_json,
                })
            if self.path == "/api/complete-mfa":
                r = s.CompleteMfa(identity.CompleteMfaRequest(
                    challenge_token=body["challengeToken"],
                    passkey_credential_json=body["credential"]))
                return self.answer(200, {"session": as_dict(r.session)})
            if self.path == "/api/passkeys/begin":
                r = s.BeginPasskeyRegistration(identity.BeginPasskeyRegistrationRequest(), metadata=bearer)
                return self.answer(200, {"creationOptionsJson": r.creation_options_json})
            if self.path == "/api/passkeys/finish":
                r = s.FinishPasskeyRegistration(identity.FinishPasskeyRegistrationRequest(
                    name=body["name"], credential_json=body["credential"]), metadata=bearer)
                return self.answer(200, {"passkey": as_dict(r.passkey)})
            if self.path == "/api/passkey-login/begin":
                r = s.BeginPasskeyLogin(identity.BeginPasskeyLoginRequest())
                return self.answer(200, {"loginToken": r.login_token,
                                         "requestOptionsJson": r.request_options_json})
            if self.path == "/api/passkey-login/finish":
                r = s.FinishPasskeyLogin(identity.FinishPasskeyLoginRequest(
                    login_token=body["loginToken"], credential_json=body["credential"]))
                return self.answer(200, {"session": as_dict(r.session)})
            return self.answer(404, {"error": self.path})
        except grpc.RpcError as e:
            return self.answer(400, {"error": f"{e.code().name}: {e.details()}"})


def verification_token(log, email):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = None
        for message in pathlib.Path(log).read_text(errors="replace").split("here it is:\n")[1:]:
            if message.startswith(f"To: {email}\n"):
                match = re.search(r"verify-email\?token=([A-Za-z0-9_-]+)", message)
                if match:
                    found = match.group(1)
        if found:
            return found
        time.sleep(0.2)
    raise Failed(f"no verification email to {email}")


def call(driver, script, *args):
    """Runs an async function of the page; its result, or Failed."""
    result = driver.execute_async_script(
        f"const done = arguments[arguments.length - 1];"
        f"({script}).then(r => done({{ok: r}}), e => done({{error: String(e)}}));",
        *args,
    )
    if "error" in result:
        raise Failed(f"{script}: {result['error']}")
    return result["ok"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateway", required=True, help="HOST:PORT of the gateway")
    parser.add_argument("--log", required=True, help="the log of `tenancy serve` (dev mailer)")
    parser.add_argument("--port", type=int, required=True, help="the relay's port on localhost")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()

    stub = identity_grpc.IdentityServiceStub(grpc.insecure_channel(args.gateway))
    Relay.stub = stub
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Relay)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    email = f"passkey-{uuid.uuid4().hex[:8]}@example.com"
    stub.SignUp(identity.SignUpRequest(email=email, password=PASSWORD, name="Passkey User"))
    stub.VerifyEmail(identity.VerifyEmailRequest(token=verification_token(args.log, email)))
    step("signed up and verified")

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
    try:
        driver.set_script_timeout(60)
        driver.get(f"http://localhost:{args.port}/")
        driver.add_virtual_authenticator(VirtualAuthenticatorOptions(
            protocol=Protocol.CTAP2,
            transport=Transport.INTERNAL,
            has_resident_key=True,
            has_user_verification=True,
            is_user_verified=True,
        ))

        login = call(driver, "passwordLogin(arguments[0], arguments[1])", email, PASSWORD)
        check(not login["secondFactor"], f"first login asked for a second factor: {login}")
        access = login["session"]["accessToken"]["token"]
        step("password login (no second factor yet)")

        added = call(driver, "registerPasskey(arguments[0], 'chromium')", access)
        check(added["passkey"]["name"] == "chromium", f"registered: {added}")
        check(len(driver.get_credentials()) == 1, "the authenticator holds one credential")
        check(driver.get_credentials()[0].is_resident_credential, "the passkey is discoverable")
        step("passkey registered in the browser")

        # Log out: the page forgets the session; a fresh page load.
        driver.get(f"http://localhost:{args.port}/")
        passwordless = call(driver, "passwordlessLogin()")
        check(passwordless["session"]["userId"] == login["session"]["userId"],
              f"passwordless login as another user: {passwordless}")
        step("passwordless login with the passkey")

        driver.get(f"http://localhost:{args.port}/")
        second = call(driver, "passwordLogin(arguments[0], arguments[1])", email, PASSWORD)
        check(second["secondFactor"], "the password alone logged in despite the passkey")
        check(second["session"]["userId"] == login["session"]["userId"], f"{second}")
        step("password login with the passkey as second factor")
    finally:
        driver.quit()
        server.shutdown()
    print("passkeys in a real browser: passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Failed as failure:
        print(f"FAILED: {failure}", file=sys.stderr, flush=True)
        sys.exit(1)
