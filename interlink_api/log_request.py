"""Validation of ``/getLogs`` requests, with the messages current upstream answers 400 with."""

from __future__ import annotations

from interlink_common.identity import is_dns1123_label, is_uid
from interlink_common.wire import LogStruct


def log_request_error(req: LogStruct) -> str | None:
    """Return the 400 message for an invalid request, or None when it may be forwarded."""
    if not is_dns1123_label(req.Namespace):
        return (f"invalid namespace {req.Namespace!r}: must be a DNS-1123 label "
                "(lower-case letters, digits and '-', at most 63 characters)")
    if not is_uid(req.PodUID):
        return f"invalid pod UID {req.PodUID!r}: must be a UUID such as the pod's metadata.uid"
    if req.ContainerName and not is_dns1123_label(req.ContainerName):
        return f"invalid container name {req.ContainerName!r}: must be a DNS-1123 label"
    if req.Opts.Tail and req.Opts.Bytes:
        return "Both Tail and LimitBytes set. Set only one of them"
    if req.Opts.SinceSeconds and req.Opts.SinceTime is not None:
        return "Both SinceSeconds and SinceTime set. Set only one of them"
    if req.Opts.Tail < 0 or req.Opts.Bytes < 0 or req.Opts.SinceSeconds < 0:
        return "Opts.Tail, Opts.Bytes and Opts.SinceSeconds must not be negative"
    return None
