"""Kubernetes value formats that specs share: object names and resource quantities."""

from __future__ import annotations

import re

# RFC 1123 subdomain, the rule for most object names (TrainingRun names among them).
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_SUBDOMAIN_MAX = 253

# The API server's own quantity grammar: a signed decimal number, then an optional binary (Ki, Mi, ...),
# decimal (m, k, M, ...) or exponent (e3) suffix.
QUANTITY_PATTERN = (
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
QUANTITY_EXAMPLES = "for example 500m, 2, 4Gi"

_QUANTITY = re.compile(QUANTITY_PATTERN)


def is_quantity(value: str) -> bool:
    return bool(_QUANTITY.match(value))
