#!/usr/bin/env python3
"""Signature V4 test vectors for Tests/BackendsTests/SigV4Tests.swift, made by botocore.

Run: python3 Tests/BackendsTests/python/sigv4_vectors.py
It prints, for each case, the canonical request, the string to sign and the
Authorization header that botocore's S3 signer produces at a fixed time; the Swift
test holds the same cases and expects the same three strings. Case "aws-docs" is the
GET Object example of the S3 documentation (Authenticating Requests: Using the
Authorization Header), whose published signature is checked here as well.
"""
import base64
import datetime
import hashlib
import json
from urllib.parse import quote

import botocore.auth
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

KEY, SECRET = "AKIDZEROFSEXAMPLE", "zerofs/secret+key/EXAMPLE0123456789abcdef"
AT = datetime.datetime(2026, 11, 20, 12, 34, 56)

# (name, method, host, raw path, query items, headers, body, region, session token, time, credentials)
CASES = [
    ("aws-docs", "GET", "examplebucket.s3.amazonaws.com", "/test.txt", [],
     {"range": "bytes=0-9"}, b"", "us-east-1", None, datetime.datetime(2013, 5, 24),
     ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")),
    ("list-with-query", "GET", "127.0.0.1:8333", "/zerofs-bucket",
     [("list-type", "2"), ("prefix", "db/sst/"), ("max-keys", "3"), ("continuation-token", "a+b/c==")],
     {}, b"", "us-east-1", None, AT, (KEY, SECRET)),
    ("put-if-absent-with-token", "PUT", "127.0.0.1:8333", "/zerofs-bucket/db/manifest/00000001", [],
     {"if-none-match": "*", "x-amz-meta-zerofs-put-id": "4f1c0de2a9b84e17"},
     b"hello, zerofs\n", "eu-west-1", "session/token+EXAMPLE==", AT, (KEY, SECRET)),
    ("key-with-spaces-and-unicode", "GET", "localhost:9000", "/zerofs-bucket/db/dir with space/\u00fc\u20ac +x~y.sst", [],
     {"range": "bytes=100-199", "x-amz-meta-note": "  two   spaces  inside "}, b"", "us-east-1", None, AT, (KEY, SECRET)),
    ("batch-delete", "POST", "127.0.0.1:8333", "/zerofs-bucket", [("delete", "")],
     {"content-md5": "placeholder", "content-type": "application/xml"},
     b"<Delete><Quiet>true</Quiet><Object><Key>db/a</Key></Object></Delete>", "us-east-1", None, AT, (KEY, SECRET)),
    ("virtual-host", "HEAD", "zerofs-bucket.s3.us-east-1.amazonaws.com", "/db/sst/00000000000000000007.sst", [],
     {}, b"", "us-east-1", None, AT, (KEY, SECRET)),
]


class RecordingSigner(S3SigV4Auth):
    """Keeps the canonical request and string to sign that add_auth computes."""

    def string_to_sign(self, request, canonical_request):
        self.canonical = canonical_request
        self.sts = super().string_to_sign(request, canonical_request)
        return self.sts


def sign(case):
    name, method, host, path, query, headers, body, region, token, at, (key, secret) = case
    headers = dict(headers)
    if "content-md5" in headers:
        headers["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers["host"] = host
    url = "http://" + host + quote(path, safe="/~")
    request = AWSRequest(method=method, url=url, headers=headers, data=body, params=query)
    botocore.auth.get_current_datetime = lambda *args, **kwargs: at
    signer = RecordingSigner(Credentials(key, secret, token), "s3", region)
    signer.add_auth(request)
    return {
        "name": name,
        "headers": headers,
        "payloadHash": request.headers["X-Amz-Content-SHA256"],
        "canonicalRequest": signer.canonical,
        "stringToSign": signer.sts,
        "authorization": request.headers["Authorization"],
    }


def main():
    vectors = [sign(case) for case in CASES]
    published = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    assert vectors[0]["authorization"].endswith("Signature=" + published), "botocore disagrees with the S3 docs"
    print(json.dumps(vectors, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
