"""Logging in to the cluster: in-cluster service account or kubeconfig, shared by kopf and our client."""

from __future__ import annotations

import kopf


def _split_authorization(header: str | None) -> tuple[str | None, str | None]:
    """`Bearer abc` -> ("Bearer", "abc"); a bare token has no scheme."""
    parts = header.split(" ", 1) if header else []
    if len(parts) == 2:
        return parts[0], parts[1]
    return None, parts[0] if parts else None


def login_with_file(kubeconfig: str) -> kopf.ConnectionInfo:
    """Credentials from an explicit kubeconfig file (`crucible operator --kubeconfig FILE`)."""
    import kubernetes

    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, token = _split_authorization(header)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def login(
    kubeconfig: str | None, settings: kopf.OperatorSettings, logger: kopf.Logger
) -> kopf.ConnectionInfo:
    """The service account in a pod, else $KUBECONFIG or ~/.kube/config, as kubectl would."""
    info = (
        login_with_file(kubeconfig) if kubeconfig else kopf.login_via_client(logger=logger, settings=settings)
    )
    if info is None:
        raise kopf.LoginError("no credentials: not in a pod and no kubeconfig found")
    return info
