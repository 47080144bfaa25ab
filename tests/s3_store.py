"""A real S3-compatible store for tests: moto's S3 server on 127.0.0.1 (a free port), reached over
HTTP by boto3 exactly as a trainer or server reaches MinIO or AWS, from this process or a child."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION = "crucible-test", "crucible-test-secret", "us-east-1"
# No credentials anywhere but the environment: a developer's ~/.aws must not leak into a test, and
# boto3 must not wait on an instance-metadata endpoint that is not there.
ISOLATION = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/crucible-test-credentials",
    "AWS_CONFIG_FILE": "/nonexistent/crucible-test-config",
    "AWS_EC2_METADATA_DISABLED": "true",
}
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


@dataclass
class S3Store:
    endpoint: str

    def env(self, credentials: bool = True) -> dict[str, str]:
        """What a pod of ours would get: endpoint and region, and (unless told not to) credentials."""
        env = {**ISOLATION, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION}
        if credentials:
            env |= {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}
        return env

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def new_bucket(self) -> str:
        """A bucket of the test's own, so tests sharing the server never see each other's objects."""
        name = f"crucible-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=body)

    def put_directory(self, directory: Path, bucket: str, prefix: str) -> str:
        """Every file of `directory` under `prefix`; the s3:// URI of the copy."""
        for path in sorted(directory.iterdir()):
            if path.is_file():
                self.put(bucket, f"{prefix}/{path.name}", path.read_bytes())
        return f"s3://{bucket}/{prefix}"


def environment_without_aws(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with no AWS setting of the developer's or CI's, only the test isolation."""
    return {**{k: v for k, v in environ.items() if k not in AWS_VARIABLES}, **ISOLATION}
