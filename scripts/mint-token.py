#!/usr/bin/env python3
"""Mints an HS256 JSON Web Token that lets a client connect to wspush as one id.

    scripts/mint-token.py SECRET SUB [TTL_SECONDS] [--aud AUD] [--iss ISS]

SECRET is the server's --auth-jwt-secret (at least 32 bytes), SUB the id the client will
connect as, TTL_SECONDS how long the token is valid (default 3600). Prints the token.
Python 3 standard library only. For example:

    SECRET=$(openssl rand -hex 32)
    TOKEN=$(scripts/mint-token.py "$SECRET" 456 3600)
    websocat "ws://127.0.0.1:8081/websocket/456?token=$TOKEN"

In production your login service mints tokens (with any JWT library) and hands them to
the clients; this script is for trying things out and for tests.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint(secret: bytes, sub: str, ttl: int, aud=None, iss=None, now=None) -> str:
    now = int(time.time()) if now is None else now
    claims = {"sub": sub, "iat": now, "exp": now + ttl}
    if aud is not None:
        claims["aud"] = aud
    if iss is not None:
        claims["iss"] = iss
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode("utf-8")) for part in (header, claims)
    )
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Mint an HS256 token for wspush (sub = the id).")
    parser.add_argument("secret", help="the server's --auth-jwt-secret (at least 32 bytes)")
    parser.add_argument("sub", help="the id the client connects as")
    parser.add_argument("ttl", nargs="?", type=int, default=3600, help="seconds the token is valid (default 3600)")
    parser.add_argument("--aud", help="audience claim (for --auth-audience)")
    parser.add_argument("--iss", help="issuer claim (for --auth-issuer)")
    args = parser.parse_args()
    secret = args.secret.encode("utf-8")
    if len(secret) < 32:
        print("mint-token.py: the secret must be at least 32 bytes, as the server requires", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("mint-token.py: the ttl must be a positive number of seconds", file=sys.stderr)
        return 2
    print(mint(secret, args.sub, args.ttl, args.aud, args.iss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
