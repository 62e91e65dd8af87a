"""Why the agent cannot connect to its broker, in words an operator can act on. Pure: no I/O.

A failed TCP connect or TLS handshake raises in paho's connect (an OSError or ssl.SSLError); a client
certificate the broker refuses after the handshake (TLS 1.3 sends the alert with the first read:
revoked, expired, unknown CA) only shows in paho's error log line ("failed to receive on socket: ...").
Both are turned into one sentence here; MqttTransport logs it once per distinct reason.
"""

from __future__ import annotations

import socket
import ssl

# OpenSSL's alert and verify reasons -> what they mean for this device
_ALERTS = {
    "CERTIFICATE_REVOKED": "the broker refused this device's certificate: it is revoked (was the device "
                           "deregistered? it must be registered again)",
    "CERTIFICATE_EXPIRED": "the broker refused this device's certificate: it has expired",
    "UNKNOWN_CA": "the broker does not know the CA that issued this device's certificate (wrong tls.cert, "
                  "or a certificate from another deployment)",
    "DECRYPT_ERROR": "the broker could not verify this device's certificate (issued by another CA than the "
                     "one the broker trusts?)",
    "BAD_CERTIFICATE": "the broker refused this device's certificate (bad certificate)",
    "CERTIFICATE_REQUIRED": "the broker requires a client certificate and none was sent (tls.cert/tls.key)",
    "HANDSHAKE_FAILURE": "the TLS handshake failed (protocol or cipher mismatch, or a refused certificate)",
    "WRONG_VERSION_NUMBER": "the broker port does not speak TLS (plaintext port, or the wrong port)",
}


def _alert(text: str) -> str | None:
    upper = text.upper()
    for key, meaning in _ALERTS.items():
        if key in upper:
            return meaning
    return None


def explain(err: BaseException, host: str, port: int) -> str:
    """One sentence for an exception raised while connecting to host:port."""
    where = f"{host}:{port}"
    if isinstance(err, ssl.SSLCertVerificationError):
        detail = getattr(err, "verify_message", "") or str(err)
        return f"the broker at {where} presented a certificate that does not verify against tls.ca ({detail})"
    if isinstance(err, ssl.SSLError):
        return _alert(f"{getattr(err, 'reason', '')} {err}") or f"TLS with the broker at {where} failed: {err}"
    if isinstance(err, ConnectionRefusedError):
        return f"nothing accepts connections at {where} (is the broker running, is the port right?)"
    if isinstance(err, socket.gaierror):
        return f"the broker host {host!r} cannot be resolved ({err.strerror or err})"
    if isinstance(err, TimeoutError | socket.timeout):
        return f"no answer from {where} (timed out: a firewall, or the wrong host)"
    if isinstance(err, OSError):
        return f"cannot connect to {where}: {err.strerror or err}"
    return f"cannot connect to {where}: {type(err).__name__}: {err}"


def explain_log(message: str) -> str | None:
    """The meaning of a paho error log line, when it is a TLS alert from the broker; else None."""
    if "SSL" not in message.upper() and "ALERT" not in message.upper():
        return None
    return _alert(message)
