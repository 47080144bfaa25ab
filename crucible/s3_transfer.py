"""Copying artifact files to and from an S3-compatible store: the trainer uploads, the server downloads.

Credentials, endpoint and region come from the environment, as boto3 reads them (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION); in a pod the operator sets them from
its configuration and the credentials Secret. Every failure is an S3Error of one line naming the
object and what went wrong, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

from crucible.s3 import S3Location

# Retries with backoff ride out a store that is briefly busy; a wrong bucket or key fails at once.
RETRIES = {"max_attempts": 5, "mode": "standard"}
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60

_CLIENT_ERRORS = {
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "no such object",
    "404": "no such object (or no such bucket)",
    "NotFound": "no such object (or no such bucket)",
    "AccessDenied": "access denied: the credentials may not use this bucket or prefix",
    "403": "access denied: the credentials may not use this bucket or prefix",
    "InvalidAccessKeyId": "the store does not know AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "AWS_SECRET_ACCESS_KEY does not match AWS_ACCESS_KEY_ID",
}


NO_CREDENTIALS = "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"


class S3Error(Exception):
    """A transfer failed; the message is one line."""


def require_credentials() -> None:
    """S3Error unless boto3 finds credentials (the environment, its shared files, an instance role)."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        found = boto3.session.Session().get_credentials()
    except BotoCoreError as error:
        raise _explain(error, "S3 credentials") from None
    if found is None:
        raise S3Error(NO_CREDENTIALS)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _explain(error: Exception, what: str) -> S3Error:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    # boto3 wraps an upload's ClientError in S3UploadFailedError; the original says what happened.
    if isinstance(error, S3UploadFailedError) and isinstance(error.__context__, ClientError):
        error = error.__context__
    if isinstance(error, NoCredentialsError):
        detail = NO_CREDENTIALS
    elif isinstance(error, EndpointConnectionError):
        detail = f"cannot reach the S3 endpoint {error.kwargs.get('endpoint_url', '')}".rstrip()
    elif isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        detail = f"{_CLIENT_ERRORS.get(code, message)} ({code})" if code else message
    else:
        detail = str(error) or type(error).__name__
    return S3Error(_one_line(f"{what}: {detail}"))


class S3Directory:
    """The objects under one S3Location, read and written file by file."""

    def __init__(self, location: S3Location) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        self.location = location
        config = Config(
            retries=RETRIES,  # type: ignore[arg-type]
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
        )
        try:
            self._client = boto3.client("s3", config=config)
        except (BotoCoreError, ValueError) as error:  # a malformed AWS_ENDPOINT_URL or region
            raise _explain(error, f"cannot use {location.uri}") from None

    def uri_of(self, name: str) -> str:
        return f"s3://{self.location.bucket}/{self.location.key(name)}"

    def upload(self, path: Path, name: str) -> None:
        """`path` to the object `<prefix>/<name>` (multipart when large)."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.upload_file(str(path), self.location.bucket, self.location.key(name))
        except (BotoCoreError, ClientError, Boto3Error) as error:
            raise _explain(error, f"cannot upload {self.uri_of(name)}") from None

    def objects(self) -> dict[str, tuple[str, int]]:
        """Every object below the prefix: its name relative to the prefix -> (ETag, size)."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        found: dict[str, tuple[str, int]] = {}
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        found[item["Key"][len(prefix) :]] = (item["ETag"].strip('"'), int(item["Size"]))
        except (BotoCoreError, ClientError) as error:
            raise _explain(error, f"cannot list {self.location.uri}") from None
        return found

    def download(self, name: str, path: Path) -> None:
        """The object `<prefix>/<name>` to `path`; boto3 writes a temporary file and renames it, so a
        failed download never leaves a partial file under `path`."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client.download_file(self.location.bucket, self.location.key(name), str(path))
        except (BotoCoreError, ClientError, Boto3Error) as error:
            raise _explain(error, f"cannot download {self.uri_of(name)}") from None
