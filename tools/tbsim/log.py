"""The one-line-per-message log on stdout, flushed per line (watched live by `make run`)."""

import re
import sys
import time

# Secrets in logged payloads (provisioning secret, issued token, claim secret) keep their first 4 characters
# (issue 8); the quotes may be escaped when a body is logged as a JSON string.
_SECRET = re.compile(r'(\\?"(?:provisionDeviceSecret|credentialsValue|token|secretKey|password)\\?"\s*:\s*\\?")'
                     r'([^"\\]{0,4})[^"\\]*')


def redact(text):
    return _SECRET.sub(r"\1\2...", text)


def clock():
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + ".%03d" % (int(t * 1000) % 1000)


def short(payload, limit=120):
    """Payload for the log: text if it is printable UTF-8, else a hex summary."""
    if payload is None or len(payload) == 0:
        return ""
    if isinstance(payload, str):
        text = payload
    else:
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            return "<%d bytes %s%s>" % (len(payload), bytes(payload[:16]).hex(), ".." if len(payload) > 16 else "")
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def peer_str(peer):
    if not peer:
        return "-"
    return "%s:%d" % (peer[0], peer[1])


class Log:
    def __init__(self, quiet=False, stream=None):
        self.quiet = quiet
        self.stream = stream

    def line(self, text):
        if self.quiet:
            return
        stream = self.stream or sys.stdout
        stream.write(clock() + " " + redact(text) + "\n")
        stream.flush()

    def coap(self, peer, mtype, method, route, device, payload, outcome):
        if self.quiet:
            return
        parts = ["coap", peer_str(peer), mtype, method, route or "-", device or "-"]
        body = short(payload)
        if body:
            parts.append(body)
        self.line(" ".join(parts) + " -> " + outcome)

    def event(self, peer, text):
        if not self.quiet:
            self.line("coap %s %s" % (peer_str(peer), text))

    def rest(self, method, path, status, note=""):
        if not self.quiet:
            self.line("rest %s %s -> %s%s" % (method, path, status, (" " + note) if note else ""))
