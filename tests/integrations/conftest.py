"""Real receivers on loopback: an HTTP server that records what it is sent (and can be
told to fail or be down), and an SMTP server (aiosmtpd)."""
import email
import email.policy
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.received.append({"path": self.path, "headers": headers, "body": body})
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"taken" if status < 300 else b"try later")

    def log_message(self, *args):
        pass


class Receiver:
    """An HTTP receiver on a fixed loopback port, which can be stopped and started again
    (a receiver that is down refuses connections)."""

    def __init__(self):
        self.received, self.answers = [], []
        self.server = None
        self.start(0)

    def start(self, port=None):
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port if port is None else port),
                                          Recorder)
        self.server.received, self.server.answers = self.received, self.answers
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.stop()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = mail.get_body(("plain", "html")).get_content()
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "subject": mail["subject"], "content": text})
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings):
    """An SMTP server on loopback (aiosmtpd), and Django's EMAIL_* settings pointing at it."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    yield mailbox
    controller.stop()
