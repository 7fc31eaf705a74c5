"""Where the suite's S3 server comes from: TEST_S3_ENDPOINT_URL, or an embedded SeaweedFS.

On a shared server every run keeps to its own bucket, named for the worker and the run
(`keel-<purpose>-<worker>-<run>`), emptied and deleted at the end: two suites started at once
against one server never touch each other's objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from keel_dev.embedded import EmbeddedS3, create_s3_bucket, s3_client
from tests.helpers.servers import RUN_ID, xdist_worker

# S3's rule: 3-63 lowercase letters, digits and hyphens, a letter or digit at each end.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str

    def client(self) -> Any:
        """A synchronous botocore client, for setup and teardown outside the app."""
        return s3_client(self.endpoint_url, self.access_key_id, self.secret_access_key)


@contextmanager
def s3_server(tmp_dir: Path) -> Iterator[S3Server]:
    """TEST_S3_ENDPOINT_URL with TEST_S3_ACCESS_KEY_ID / TEST_S3_SECRET_ACCESS_KEY when set;
    otherwise an embedded server with its data in tmp_dir, stopped at the end."""
    configured = os.environ.get("TEST_S3_ENDPOINT_URL")
    if configured:
        yield S3Server(configured, *_configured_credentials())
        return
    with EmbeddedS3(tmp_dir) as server:
        yield S3Server(server.url, server.access_key_id, server.secret_access_key)


def _configured_credentials() -> tuple[str, str]:
    key_id = os.environ.get("TEST_S3_ACCESS_KEY_ID")
    secret = os.environ.get("TEST_S3_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        raise RuntimeError(
            "TEST_S3_ENDPOINT_URL is set: set TEST_S3_ACCESS_KEY_ID and TEST_S3_SECRET_ACCESS_KEY "
            "too (the suite signs every request)"
        )
    return key_id, secret


def run_bucket_name(purpose: str = "test") -> str:
    """`keel-<purpose>-<worker>-<run>`, a valid S3 bucket name unique to this process on any
    server (the purpose is shortened when the whole would pass 63 characters)."""
    suffix = _bucket_part(f"{xdist_worker()}-{RUN_ID}")
    stem = _bucket_part(f"keel-{purpose}")[: 62 - len(suffix)].rstrip("-")
    name = f"{stem}-{suffix}"
    if not BUCKET_NAME.match(name):
        raise ValueError(f"no valid bucket name for purpose {purpose!r}: {name!r}")
    return name


def _bucket_part(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def create_bucket(server: S3Server, name: str) -> None:
    """Create the bucket unless it exists (and is ours)."""
    create_s3_bucket(server.client(), name)


def empty_bucket(server: S3Server, name: str) -> None:
    """Abort its unfinished multipart uploads and delete its objects. Unversioned buckets only:
    the suite never turns versioning on."""
    client = server.client()
    _abort_multipart_uploads(client, name)
    _delete_objects(client, name)


def delete_bucket(server: S3Server, name: str) -> None:
    """Empty the bucket (S3 deletes no other), then delete it; nothing when it is gone."""
    try:
        empty_bucket(server, name)
        server.client().delete_bucket(Bucket=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise


def _abort_multipart_uploads(client: Any, bucket: str) -> None:
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )


def _delete_objects(client: Any, bucket: str) -> None:
    # A page holds at most 1000 keys, which is also DeleteObjects' limit.
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
