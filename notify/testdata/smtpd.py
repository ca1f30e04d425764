#!/usr/bin/env python3
# A real SMTP server for the e-mail tests (Debian's python3-aiosmtpd):
# STARTTLS required, AUTH PLAIN/LOGIN checked against USER:PASSWORD, each
# message printed as one JSON line.
# usage: smtpd.py PORT CERT KEY USER PASSWORD
import asyncio, json, ssl, sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, user, password = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].encode(), sys.argv[5].encode()

class Handler:
    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                          "tls": session.ssl is not None, "authenticated": bool(session.authenticated),
                          "data": envelope.content.decode("utf-8", "replace")}), flush=True)
        return "250 queued"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == user and auth_data.password == password
    return AuthResult(success=ok, handled=False)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
controller = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx, require_starttls=True,
                        authenticator=authenticator, auth_require_tls=True)
controller.start()
print("ready", flush=True)
try:
    asyncio.get_event_loop().run_forever()
finally:
    controller.stop()
