"""Escalation notifications reach a real SMTP server and a Slack-style webhook on loopback."""
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from exceptions.escalation import notify
from exceptions.models import Case, Queue


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept one message."""

    def handle(self):
        self.wfile.write(b"220 localhost ready\r\n")
        data, in_data = [], False
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace")
            if in_data:
                if line in (".\r\n", ".\n"):
                    in_data = False
                    self.server.messages.append("".join(data))
                    self.wfile.write(b"250 queued\r\n")
                else:
                    data.append(line)
                continue
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250 localhost\r\n")
            elif verb == "DATA":
                in_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                if verb == "RCPT":
                    self.server.recipients.append(line.strip())
                self.wfile.write(b"250 ok\r\n")


class HookHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpHandler)
    server.messages, server.recipients = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_server():
    server = HTTPServer(("127.0.0.1", 0), HookHandler)
    server.posts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_breach_notifies_by_email_and_webhook(db, settings, smtp_server, hook_server):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.server_address[1]
    queue = Queue.objects.get(slug="finance-ops")
    queue.notify_emails = "lead@example.com\nops@example.com"
    queue.notify_webhook_url = f"http://127.0.0.1:{hook_server.server_address[1]}/hook"
    queue.save()
    case = Case.objects.create(type="invoice_blocked", fingerprint="I1", queue=queue,
                               title="Invoice I1 blocked: missing_po", object_kind="invoice",
                               object_id="I1")
    notify(case, "SLA breached: Invoice I1 blocked: missing_po", queue)
    assert len(smtp_server.messages) == 1
    assert "SLA breached" in smtp_server.messages[0]
    assert len(smtp_server.recipients) == 2
    [(content_type, payload)] = hook_server.posts
    assert content_type == "application/json"
    assert payload["text"].startswith("SLA breached: Invoice I1 blocked")
    assert f"/exceptions/{case.pk}/" in payload["text"]


def test_an_unreachable_receiver_does_not_break_the_sweep(db, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9
    queue = Queue.objects.get(slug="finance-ops")
    queue.notify_emails = "lead@example.com"
    queue.notify_webhook_url = "http://127.0.0.1:9/hook"
    queue.save()
    case = Case.objects.create(type="invoice_blocked", fingerprint="I1", queue=queue,
                               title="t", object_kind="invoice", object_id="I1")
    notify(case, "SLA breached", queue)  # logs, does not raise
