#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Run from anywhere: `python3 fuzz/make-seeds.py`. The output is deterministic, so the
committed corpus can be checked by running this again and looking at `git status`.
Seeds written here are named `seed-*`; files that `cargo fuzz cmin` merged in keep their
hash names and are left alone (use --clean to remove every file first).
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def mask_bytes(payload, mask):
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frame(opcode, payload=b"", fin=True, mask=MASK, rsv=0, length=None, masked=True):
    """A client frame; `length` overrides the announced length (for malformed seeds)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if masked else 0
    if n <= 125:
        head = bytes([first, mbit | n])
    elif n <= 0xFFFF:
        head = bytes([first, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, mbit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + mask + mask_bytes(payload, mask)


def close(code, reason=b""):
    return frame(CLOSE, struct.pack(">H", code) + reason)


def frame_seeds():
    text = "héllo wörld ✓ κόσμε 😀".encode()
    seeds = {
        # Every opcode, every length class.
        "text-hello-rfc": frame(TEXT, b"Hello"),
        "text-unicode": frame(TEXT, text),
        "text-empty": frame(TEXT, b""),
        "binary-0": frame(BINARY, b""),
        "binary-125": frame(BINARY, bytes(range(125))),
        "binary-126": frame(BINARY, bytes(i % 251 for i in range(126))),
        "text-126": frame(TEXT, (b"abc" * 42)),
        "binary-65535": frame(BINARY, bytes(i % 7 for i in range(65535))),
        "binary-65536": frame(BINARY, bytes(i % 13 for i in range(65536))),
        "text-over-max-header-only": frame(TEXT, b"", length=65537)[:14],
        "binary-64bit-length-short-payload": frame(BINARY, b"")[:1]
        + bytes([0x80 | 127])
        + struct.pack(">Q", 3)
        + MASK
        + mask_bytes(b"abc", MASK),
        "ping": frame(PING, b"ping payload"),
        "ping-125": frame(PING, b"p" * 125),
        "pong-empty": frame(PONG, b""),
        "close-empty": frame(CLOSE, b""),
        "close-1000": close(1000),
        "close-1001-reason": close(1001, "bye ✓".encode()),
        "close-4999-long-reason": close(4999, b"r" * 123),
        "close-1-byte": frame(CLOSE, b"\x03"),
        "close-1005": close(1005),
        "close-bad-utf8": close(1000, b"\xce\xba\xff"),
        "close-126-bytes": close(1000, b"r" * 124),
        # Fragmented messages.
        "fragments-text-ping-between": frame(TEXT, "Hél".encode(), fin=False)
        + frame(PING, b"p", mask=b"\x09\x08\x07\x06")
        + frame(CONT, b"lo, ", fin=False, mask=b"\x01\x02\x03\x04")
        + frame(PONG, b"")
        + frame(CONT, "wörld".encode(), mask=b"\x05\x06\x07\x08"),
        "fragments-binary": frame(BINARY, b"\x00\x01", fin=False)
        + frame(CONT, b"", fin=False)
        + frame(CONT, b"\x02\x03"),
        "fragments-codepoint-split": frame(TEXT, b"\xe2", fin=False)
        + frame(CONT, b"\x9c", fin=False)
        + frame(CONT, b"\x93"),
        "fragments-then-close": frame(TEXT, b"part", fin=False) + close(1000),
        "several-frames": frame(TEXT, b"one") + frame(BINARY, b"two") + frame(PING, b"") + close(1000, b"done"),
        "truncated-frame": frame(TEXT, b"truncated text frame")[:12],
        # Protocol errors.
        "text-invalid-utf8": frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"),
        "text-invalid-utf8-then-more": frame(TEXT, b"ok\xff" + b"x" * 200),
        "fragments-invalid-utf8": frame(TEXT, b"ok\xf4", fin=False) + frame(CONT, b"\x90"),
        "fragments-unfinished-codepoint": frame(TEXT, b"\xe2\x9c", fin=False) + frame(CONT, b""),
        "rsv1": frame(TEXT, b"x", rsv=4),
        "rsv2": frame(BINARY, b"x", rsv=2),
        "rsv3": frame(PING, b"", rsv=1),
        "unmasked": frame(TEXT, b"unmasked", masked=False),
        "reserved-opcode-3": frame(0x3, b""),
        "reserved-opcode-b": frame(0xB, b""),
        "continuation-without-message": frame(CONT, b"x"),
        "new-message-inside-fragments": frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
        "fragmented-ping": frame(PING, b"x", fin=False),
        "control-126": frame(PING, b"p" * 126),
        "length-top-bit": bytes([0x82, 0x80 | 127]) + b"\x80" + b"\x00" * 7 + MASK,
        "length-huge": bytes([0x82, 0x80 | 127]) + b"\x00\x00\x00\x01\x00\x00\x00\x00" + MASK,
        "fragments-over-max": frame(BINARY, b"a" * 40000, fin=False) + frame(CONT, b"", length=30000)[:14],
    }
    return seeds


def request(lines, request_line="GET /websocket/456 HTTP/1.1", eol="\r\n"):
    return (request_line + eol + "".join(line + eol for line in lines) + eol).encode()


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
BASIC = ["Host: example.com", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: " + KEY, "Sec-WebSocket-Version: 13"]


def without(name, extra=()):
    return [line for line in BASIC if not line.startswith(name)] + list(extra)


def handshake_seeds():
    chrome = [
        "Host: push.example.com:8081",
        "Connection: Upgrade",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Upgrade: websocket",
        "Origin: https://app.example.com",
        "Sec-WebSocket-Version: 13",
        "Accept-Encoding: gzip, deflate, br",
        "Accept-Language: en-US,en;q=0.9",
        "Cookie: session=abc123; theme=dark",
        "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    ]
    firefox = [
        "Host: localhost:8082",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Accept: */*",
        "Accept-Language: en-US,en;q=0.5",
        "Accept-Encoding: gzip, deflate, br",
        "Sec-WebSocket-Version: 13",
        "Origin: http://localhost:8082",
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Connection: keep-alive, Upgrade",
        "Sec-Fetch-Dest: empty",
        "Sec-Fetch-Mode: websocket",
        "Sec-Fetch-Site: same-origin",
        "Pragma: no-cache",
        "Cache-Control: no-cache",
        "Upgrade: websocket",
    ]
    curl = [
        "Host: 127.0.0.1:8081",
        "User-Agent: curl/8.5.0",
        "Accept: */*",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: " + KEY,
    ]
    early_frame = frame(TEXT, b"hi")
    seeds = {
        "chrome": request(chrome, "GET /websocket/456?token=eyJhbGciOi HTTP/1.1"),
        "firefox": request(firefox, "GET /websocket/user%20one HTTP/1.1"),
        "curl": request(curl),
        "curl-with-early-frame": request(curl) + early_frame,
        "minimal": request(BASIC),
        "lowercase-and-spaces": request([
            "host: example.com", "UPGRADE: WebSocket", "connection: keep-alive,upgrade",
            "sec-websocket-key:   " + KEY + "  ", "SEC-WEBSOCKET-VERSION: 13"]),
        "lf-line-endings": request(BASIC, eol="\n"),
        "percent-encoded-unicode-id": request(BASIC, "GET /websocket/%C3%A9t%C3%A9 HTTP/1.1"),
        "id-128": request(BASIC, "GET /websocket/" + "x" * 128 + " HTTP/1.1"),
        "id-129": request(BASIC, "GET /websocket/" + "x" * 129 + " HTTP/1.1"),
        "id-with-slash": request(BASIC, "GET /websocket/a%2Fb HTTP/1.1"),
        "id-bad-percent": request(BASIC, "GET /websocket/%FF%FE HTTP/1.1"),
        "other-path": request(BASIC, "GET /other/456 HTTP/1.1"),
        "empty-id": request(BASIC, "GET /websocket/?x=1 HTTP/1.1"),
        "post": request(BASIC, "POST /websocket/456 HTTP/1.1"),
        "http-1.0": request(BASIC, "GET /websocket/456 HTTP/1.0"),
        "missing-host": request(without("Host")),
        "duplicate-host": request(BASIC + ["Host: other.example.com"]),
        "host-with-space": request(without("Host", ["Host: a b"])),
        "upgrade-h2c": request(without("Upgrade", ["Upgrade: h2c"])),
        "connection-keep-alive": request(without("Connection", ["Connection: keep-alive"])),
        "version-8": request(without("Sec-WebSocket-Version", ["Sec-WebSocket-Version: 8"])),
        "version-list": request(without("Sec-WebSocket-Version", ["Sec-WebSocket-Version: 13, 8"])),
        "missing-key": request(without("Sec-WebSocket-Key")),
        "short-key": request(without("Sec-WebSocket-Key", ["Sec-WebSocket-Key: c2hvcnQ="])),
        "key-no-padding": request(without("Sec-WebSocket-Key", ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"])),
        "origin-not-utf8": request(BASIC).replace(b"\r\n\r\n", b"\r\nOrigin: \xff\xfe\r\n\r\n"),
        "header-value-latin1": request(BASIC + ["X-Name: caf\u00e9"]).replace("é".encode(), b"\xe9"),
        "bad-header-line": b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "tls-client-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),
        "too-many-headers": request(BASIC + ["X-Extra-%d: %d" % (i, i) for i in range(30)]),
        "head-over-8k": request(BASIC + ["X-Long: " + "a" * 8200]),
        "incomplete": request(BASIC)[:60],
        "empty": b"",
        "crlf-only": b"\r\n\r\n",
        # Resume targets (`since_from_target` runs on every input too).
        "since-v1": request(BASIC + ["Sec-WebSocket-Protocol: wspush.v1"],
                            "GET /websocket/456?since=k3j9a2x1:42 HTTP/1.1"),
        "since-percent-encoded": request(BASIC, "GET /websocket/456?x=1&since=k3j9a2x1%3A0 HTTP/1.1"),
        "since-twice": request(BASIC, "GET /websocket/456?since=a:1&since=a:2 HTTP/1.1"),
        "since-offset-over-2-53": request(BASIC, "GET /websocket/456?since=a:9007199254740992 HTTP/1.1"),
        "since-epoch-17": request(BASIC, "GET /websocket/456?since=" + "a" * 17 + ":1 HTTP/1.1"),
        "since-not-utf8": request(BASIC, "GET /websocket/456?since=%ff:1 HTTP/1.1"),
        "since-bare": b"/websocket/u?since=ZZ:9007199254740991",
    }
    return seeds


def envelope(origin, opcode, body, version=1, origin_len=None):
    n = len(origin) if origin_len is None else origin_len
    return bytes([version, opcode, n]) + origin + body


def envelope_v2(origin, opcode, position, body, position_len=None):
    n = len(position) if position_len is None else position_len
    return bytes([2, opcode, len(origin)]) + origin + bytes([n]) + position + body


def envelope_seeds():
    return {
        "v2-text": envelope_v2(b"node-a", 1, b"k3j9a2x1:42", "héllo ✓".encode()),
        "v2-binary": envelope_v2(b"n", 2, b"E:0", b"\x00\n\xff"),
        "v2-longest-position": envelope_v2(b"n", 1, b"Z" * 16 + b":9007199254740991", b"x"),
        "v2-offset-over-2-53": envelope_v2(b"n", 1, b"E:9007199254740992", b"x"),
        "v2-leading-zero": envelope_v2(b"n", 1, b"E:007", b"x"),
        "v2-no-colon": envelope_v2(b"n", 1, b"E7", b"x"),
        "v2-epoch-17": envelope_v2(b"n", 1, b"a" * 17 + b":1", b"x"),
        "v2-position-empty": envelope_v2(b"n", 1, b"", b"x"),
        "v2-position-39": envelope_v2(b"n", 1, b"a" * 39, b""),
        "v2-truncated-position": envelope_v2(b"n", 1, b"E:1", b"", position_len=9),
        "v2-no-position-byte": bytes([2, 1, 1]) + b"n",
        "v2-text-invalid-utf8": envelope_v2(b"n", 1, b"E:1", b"ok\xc3"),
        "text": envelope(b"node-a", 1, "héllo ✓".encode()),
        "binary": envelope(b"n", 2, b"\x00\xff\x10"),
        "text-empty": envelope(b"node-b", 1, b""),
        "binary-empty": envelope(b"n", 2, b""),
        "origin-64": envelope(b"o" * 64, 1, b"max origin"),
        "origin-65": envelope(b"o" * 65, 1, b"too long"),
        "origin-empty": envelope(b"", 1, b"x"),
        "origin-not-utf8": envelope(b"\xff\xfe", 2, b"x"),
        "origin-unicode": envelope("nœud-é".encode(), 1, b"x"),
        "version-2": envelope(b"n", 1, b"x", version=2),
        "version-3": envelope(b"n", 1, b"x", version=3),
        "opcode-3": envelope(b"n", 3, b"x"),
        "opcode-8": envelope(b"n", 8, b"\x03\xe8"),
        "text-invalid-utf8": envelope(b"n", 1, b"ok\xc3"),
        "truncated-origin": envelope(b"abc", 1, b"", origin_len=5),
        "truncated-header": b"\x01\x01",
        "empty": b"",
        "json-instead": b'{"KEY":456,"VALUE":"x"}',
        "large-binary": envelope(b"node-z", 2, bytes(i % 256 for i in range(4096))),
    }


def compat_seeds():
    seeds = {
        "numeric-key": b'{"KEY":456,"VALUE":"aaaa"}',
        "string-key": b'{"KEY":"user-1","VALUE":"hello"}',
        "with-origin": json.dumps({"KEY": 456, "VALUE": "hi", "WSPUSH_NODE": "n1"}, separators=(",", ":")).encode(),
        "extra-fields": b'{"VALUE":"x","KEY":7,"OTHER":[1,{"a":null}]}',
        "negative-key": b'{"KEY":-5,"VALUE":"neg"}',
        "u64-key": b'{"KEY":18446744073709551615,"VALUE":"big"}',
        "over-u64-key": b'{"KEY":18446744073709551616,"VALUE":"bigger"}',
        "leading-zero-string-key": b'{"KEY":"0456","VALUE":"x"}',
        "float-key": b'{"KEY":1.5,"VALUE":"x"}',
        "exponent-key": b'{"KEY":1e3,"VALUE":"x"}',
        "empty-key": b'{"KEY":"","VALUE":"x"}',
        "slash-key": b'{"KEY":"a/b","VALUE":"x"}',
        "long-key": ('{"KEY":"%s","VALUE":"x"}' % ("k" * 129)).encode(),
        "key-128": ('{"KEY":"%s","VALUE":"x"}' % ("k" * 128)).encode(),
        "null-key": b'{"KEY":null,"VALUE":"x"}',
        "missing-value": b'{"KEY":1}',
        "numeric-value": b'{"KEY":1,"VALUE":3}',
        "escapes": b'{"KEY":"\\u00e9\\ud83d\\ude00","VALUE":"line\\nbreak \\"quoted\\" \\\\ \\t"}',
        "lone-surrogate": b'{"KEY":"a","VALUE":"\\ud800"}',
        "unicode-raw": '{"KEY":"用户","VALUE":"你好 ✓"}'.encode(),
        "whitespace": b' \r\n\t{ "KEY" : 456 , "VALUE" : "x" } \n',
        "duplicate-key": b'{"KEY":1,"KEY":"two","VALUE":"x"}',
        "origin-not-string": b'{"KEY":1,"VALUE":"x","WSPUSH_NODE":5}',
        "array": b"[1,2]",
        "string": b'"KEY"',
        "not-json": b"not json",
        "truncated": b'{"KEY":456,"VALUE":"aa',
        "trailing-garbage": b'{"KEY":456,"VALUE":"x"}xyz',
        "invalid-utf8": b'{"KEY":1,"VALUE":"\xff"}',
        "deep-nesting": b'{"KEY":1,"VALUE":"x","D":' + b"[" * 200 + b"]" * 200 + b"}",
        "empty": b"",
        # The newline-separated form the check also round-trips: key, value, origin.
        "parts-numeric": b"456\nhello\nnode-a",
        "parts-string": "user-ü\nvalue with \"quotes\"\n".encode(),
    }
    return seeds


def main():
    clean = "--clean" in sys.argv[1:]
    targets = {
        "frame_decoder": frame_seeds(),
        "handshake_parser": handshake_seeds(),
        "envelope_decoder": envelope_seeds(),
        "compat_decoder": compat_seeds(),
    }
    for target, seeds in targets.items():
        directory = os.path.join(CORPUS, target)
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if clean or name.startswith("seed-"):
                os.remove(os.path.join(directory, name))
        for name, data in seeds.items():
            with open(os.path.join(directory, "seed-" + name), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
