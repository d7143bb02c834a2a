"""A real SMTP server for Custodian's tests (aiosmtpd): STARTTLS or implicit TLS with a test
certificate, optional AUTH PLAIN/LOGIN against one user, every message stored under OUT/msg-N/:
raw.eml, envelope.json (MAIL FROM, RCPT TO, AUTH user, TLS, headers, MIME parts) and the
decoded parts (attachments by file name, inline parts by Content-ID).

usage: smtp_sink.py OUT PORT [--cert C --key K] [--implicit] [--user U --password-file F]
Prints "READY" once it accepts connections; runs until killed.
"""
import argparse, email, email.policy, json, os, ssl, sys, threading, time

import logging

# aiosmtpd logs its own deprecation notices (Session.login_data) on every AUTH.
logging.disable(logging.WARNING)

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, out):
        self.out, self.n, self.lock = out, 0, threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            n = self.n
        d = os.path.join(self.out, f"msg-{n}")
        tmp = d + ".partial"
        os.makedirs(os.path.join(tmp, "parts"))
        raw = envelope.original_content or envelope.content
        with open(os.path.join(tmp, "raw.eml"), "wb") as f:
            f.write(raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            name = part.get_filename()
            cid = (part.get("Content-ID") or "").strip("<>")
            data = part.get_payload(decode=True) or b""
            entry = {"content_type": part.get_content_type(), "filename": name,
                     "content_id": cid or None,
                     "disposition": part.get_content_disposition(), "size": len(data)}
            body = {"text/html": "body.html", "text/plain": "body.txt"}.get(part.get_content_type())
            target = name or (cid and f"cid-{cid}") or body
            if target:
                with open(os.path.join(tmp, "parts", os.path.basename(target)), "wb") as f:
                    f.write(data)
                entry["saved_as"] = os.path.basename(target)
            parts.append(entry)
        info = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_user": getattr(session, "custodian_user", None),
            "tls": session.ssl is not None,
            "subject": msg["Subject"],
            "from": msg["From"],
            "to": msg["To"],
            "message_id": msg["Message-ID"],
            "parts": parts,
        }
        with open(os.path.join(tmp, "envelope.json"), "w") as f:
            json.dump(info, f, indent=1)
        os.rename(tmp, d)
        return "250 OK stored as msg-%d" % n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("port", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password-file")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    kwargs = {}
    tls = None
    if a.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.cert, a.key)
    if a.user:
        password = open(a.password_file).read().strip()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and \
                auth_data.login.decode() == a.user and auth_data.password.decode() == password
            if ok:
                session.custodian_user = a.user
            return AuthResult(success=ok)

        kwargs.update(authenticator=authenticator, auth_require_tls=True)
    if tls and a.implicit:
        kwargs["ssl_context"] = tls
    elif tls:
        kwargs.update(tls_context=tls, require_starttls=True)
    if a.user and not tls:
        kwargs["auth_require_tls"] = False
    controller = Controller(Store(a.out), hostname="127.0.0.1", port=a.port,
                            server_hostname="localhost", ready_timeout=10, **kwargs)
    if tls and a.implicit:
        # Controller's own readiness probe speaks plain SMTP; implicit TLS needs its own.
        controller._trigger_server = lambda: None
    controller.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
