"""The typed layer over daybook's generated stubs (`daybook.v1`)."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from daybook.v1 import (
    events_pb2,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    record_service_pb2,
    record_service_pb2_grpc,
    records_pb2,
    tenant_service_pb2,
    tenant_service_pb2_grpc,
    tenants_pb2,
    usage_service_pb2,
    usage_service_pb2_grpc,
)

T = TypeVar("T")

SENDER_ROLES = {
    "consumer": events_pb2.SENDER_ROLE_CONSUMER,
    "agent": events_pb2.SENDER_ROLE_AGENT,
    "bot": events_pb2.SENDER_ROLE_BOT,
    "proactive": events_pb2.SENDER_ROLE_PROACTIVE,
    "system": events_pb2.SENDER_ROLE_SYSTEM,
}

METERS = {
    "dar": records_pb2.METER_DAR,
    "cycle": records_pb2.METER_CYCLE,
    "mau": records_pb2.METER_MAU,
}

CHANNELS = {
    "web": events_pb2.CHANNEL_WEB,
    "sms": events_pb2.CHANNEL_SMS,
    "whatsapp": events_pb2.CHANNEL_WHATSAPP,
    "facebook": events_pb2.CHANNEL_FACEBOOK,
    "email": events_pb2.CHANNEL_EMAIL,
    "apple": events_pb2.CHANNEL_APPLE,
    "other": events_pb2.CHANNEL_OTHER,
}


class DaybookError(Exception):
    """A call daybook refused, with what its `google.rpc` details say.

    `code` is the gRPC status code's name ("INVALID_ARGUMENT"), `reason` the ErrorInfo
    reason ("STORE_UNAVAILABLE"), `rule` the RULEBOOK rule behind it when daybook names
    one, and `field_violations` the (field, description) pairs of a BadRequest.
    """

    def __init__(
        self,
        code: str,
        message: str,
        reason: str = "",
        rule: str = "",
        field_violations: Sequence[Tuple[str, str]] = (),
    ):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.rule = rule
        self.field_violations = list(field_violations)


class InvalidArgument(DaybookError):
    """INVALID_ARGUMENT: the event or request is malformed (see `field_violations`)."""


class AlreadyExists(DaybookError):
    """ALREADY_EXISTS: an event id reused with another payload (T-2); the first stands."""


class FailedPrecondition(DaybookError):
    """FAILED_PRECONDITION: too late for its period (T-3), or a change daybook refuses."""


class NotFound(DaybookError):
    """NOT_FOUND: an unknown tenant, interaction or period."""


class PermissionDenied(DaybookError):
    """PERMISSION_DENIED or UNAUTHENTICATED: the credentials do not allow the call."""


class Unavailable(DaybookError):
    """UNAVAILABLE: daybook (or its shared store) did not answer; retrying is safe."""


class ResourceExhausted(DaybookError):
    """RESOURCE_EXHAUSTED: a request or batch over daybook's limits."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def error_from_rpc(error: grpc.RpcError) -> DaybookError:
    """The exception for a failed call, with its `google.rpc` details decoded."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    reason, rule, violations = "", "", []
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, rule = info.reason, info.metadata.get("rule", "")
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [(v.field, v.description) for v in bad.field_violations]
    kind = _BY_CODE.get(code, DaybookError)
    return kind(code.name, message or "", reason, rule, violations)


def error_from_refusal(refusal: events_pb2.Refusal) -> DaybookError:
    """The exception for one event of a batch that daybook refused."""
    kind = next((k for c, k in _BY_CODE.items() if c.name == refusal.code), DaybookError)
    violations = [(v.field, v.description) for v in refusal.field_violations]
    return kind(refusal.code, refusal.reason, "", refusal.rule, violations)


def message(
    tenant_id: str,
    event_id: str,
    event_time: str,
    consumer_id: str,
    *,
    conversation_id: str = "",
    sender_role: str = "consumer",
    channel: str = "web",
    sender_id: str = "",
    integration_id: str = "",
    provider_price: Optional[Tuple[Union[Decimal, str], str]] = None,
) -> events_pb2.Event:
    """A message event, for `ingest_batch` (or built by `Client.ingest_message`).

    `provider_price` is (amount, ISO 4217 currency), the amount exact: a `Decimal` or a
    decimal string, never a float.
    """
    if isinstance(provider_price, tuple) and isinstance(provider_price[0], float):
        raise TypeError("provider_price amounts are exact: pass a Decimal or a decimal string")
    body = events_pb2.MessageEvent(
        consumer_id=consumer_id,
        conversation_id=conversation_id,
        sender_role=SENDER_ROLES[sender_role],
        sender_id=sender_id,
        channel=CHANNELS[channel],
        integration_id=integration_id,
    )
    if provider_price is not None:
        amount, currency = provider_price
        body.provider_price.CopyFrom(records_pb2.Money(amount=str(amount), currency=currency))
    return events_pb2.Event(tenant_id=tenant_id, event_id=event_id, event_time=event_time, message=body)


class _BearerToken(grpc.AuthMetadataPlugin):
    def __init__(self, token: str):
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __call__(self, context, callback):
        callback(self._metadata, None)


class Client:
    """A connection to one daybook.

    `target` is "host:port" (TCP) or "unix:/path/to/socket". With `tls=True` the
    connection is TLS, checked against `root_certificates` (PEM bytes; the system's
    roots when None). `token` (or `token_file`, read once) is sent as a bearer token.
    Calls that fail with UNAVAILABLE are retried up to `retries` times with exponential
    backoff and jitter: every ingest carries its event id, so a retry is answered as
    the same event (T-2), never counted twice.
    """

    def __init__(
        self,
        target: str,
        *,
        token: Optional[str] = None,
        token_file: Optional[str] = None,
        tls: bool = False,
        root_certificates: Optional[bytes] = None,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.05,
    ):
        if token_file is not None:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        self._metadata: Tuple[Tuple[str, str], ...] = ()
        # grpc names a Unix socket's path as the HTTP/2 authority, percent-encoded, which
        # daybook's HTTP/2 stack refuses: a socket is local, so name it `localhost`.
        options = [("grpc.default_authority", "localhost")] if target.startswith("unix:") else []
        if tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            if token:
                call = grpc.metadata_call_credentials(_BearerToken(token))
                credentials = grpc.composite_channel_credentials(credentials, call)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            # Plaintext (loopback, a Unix socket): the token goes as metadata.
            if token:
                self._metadata = (("authorization", f"Bearer {token}"),)
            self._channel = grpc.insecure_channel(target, options=options)
        self._ingest = ingest_service_pb2_grpc.IngestServiceStub(self._channel)
        self._usage = usage_service_pb2_grpc.UsageServiceStub(self._channel)
        self._records = record_service_pb2_grpc.RecordServiceStub(self._channel)
        self._tenants = tenant_service_pb2_grpc.TenantServiceStub(self._channel)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Retries and errors.

    def _pause(self, attempt: int) -> None:
        delay = self.backoff * (2**attempt)
        time.sleep(delay / 2 + random.uniform(0, delay / 2))

    def _call(self, rpc: Callable[..., T], request, *, retry: bool = True) -> T:
        attempt = 0
        while True:
            try:
                return rpc(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                error = error_from_rpc(e)
                if retry and isinstance(error, Unavailable) and attempt < self.retries:
                    self._pause(attempt)
                    attempt += 1
                    continue
                raise error from None

    # Tenants.

    def create_tenant(self, tenant_id: str, *, meter: str = "dar", time_zone: str = "UTC"):
        """Creates a tenant with one meter ("dar", "cycle" or "mau") in a time zone;
        raises `AlreadyExists` if it exists. Richer definitions (several meters, plans,
        settings changes): `TenantService` through `daybook.v1` directly."""
        tenant = tenants_pb2.Tenant(
            tenant_id=tenant_id, meter=METERS[meter], settings=tenants_pb2.Settings(time_zone=time_zone)
        )
        request = tenant_service_pb2.CreateTenantRequest(tenant=tenant)
        return self._call(self._tenants.CreateTenant, request).tenant

    # Ingest.

    def ingest_message(self, tenant_id: str, event_id: str, event_time: str, consumer_id: str, **fields):
        """Meters one message; returns its `EventOutcome` (disposition, interactions,
        credit lines). Keyword fields as for `message()`."""
        event = message(tenant_id, event_id, event_time, consumer_id, **fields)
        request = ingest_service_pb2.IngestMessageRequest(
            tenant_id=event.tenant_id, event_id=event.event_id, event_time=event.event_time, message=event.message
        )
        return self._call(self._ingest.IngestMessage, request).outcome

    def ingest_batch(self, events: Iterable[events_pb2.Event], *, raise_refusals: bool = False) -> List:
        """Meters events in batches of up to 1000, returning one `EventOutcome` per event,
        in order. Events refused as UNAVAILABLE are sent again (with backoff) until
        accepted or `retries` runs out; other refusals are in their outcome's `refusal`
        (or raised, with `raise_refusals`)."""
        events = list(events)
        outcomes: List = []
        for start in range(0, len(events), 1000):
            chunk = events[start : start + 1000]
            answers = self._batch(chunk)
            for attempt in range(self.retries):
                again = [i for i, o in enumerate(answers) if o.refusal.code == "UNAVAILABLE"]
                if not again:
                    break
                self._pause(attempt)
                for i, answer in zip(again, self._batch([chunk[i] for i in again])):
                    answers[i] = answer
            if raise_refusals:
                for outcome in answers:
                    if outcome.HasField("refusal"):
                        raise error_from_refusal(outcome.refusal)
            outcomes.extend(answers)
        return outcomes

    def _batch(self, events: List[events_pb2.Event]) -> List:
        def send(request, timeout, metadata):
            responses = self._ingest.IngestBatch(iter([request]), timeout=timeout, metadata=metadata)
            return [outcome for response in responses for outcome in response.outcomes]

        return self._call(send, ingest_service_pb2.IngestBatchRequest(events=events))

    # Books.

    def usage(self, tenant_id: str, start_date: str = "", end_date: str = ""):
        """The tenant's usage (local dates `start_date..=end_date`; empty: open)."""
        request = usage_service_pb2.GetUsageRequest(tenant_id=tenant_id, start_date=start_date, end_date=end_date)
        return self._call(self._usage.GetUsage, request).usage

    def usage_groups(self, tenant_id: str, group_by: str, start_date: str = "", end_date: str = ""):
        """The tenant's usage broken down by "day", "meter", "channel" or "integration": a
        dict from each group's key (a date, a meter id, a channel, an integration id; ""
        for what has none) to its `Usage`. The groups sum exactly to `usage(...)` over
        the same dates."""
        grouping = {
            "day": usage_service_pb2.USAGE_GROUPING_DAY,
            "meter": usage_service_pb2.USAGE_GROUPING_METER,
            "channel": usage_service_pb2.USAGE_GROUPING_CHANNEL,
            "integration": usage_service_pb2.USAGE_GROUPING_INTEGRATION,
        }
        if group_by not in grouping:
            raise ValueError(f"group_by must be one of {sorted(grouping)}, not {group_by!r}")
        request = usage_service_pb2.GetUsageRequest(
            tenant_id=tenant_id, start_date=start_date, end_date=end_date, group_by=grouping[group_by]
        )
        return {g.key: g.usage for g in self._call(self._usage.GetUsage, request).groups}

    def statement(self, tenant_id: str, period: str):
        """The plan statement of a period: "2025-06", or "2025-01-01/2025-12-31"."""
        request = usage_service_pb2.GetStatementRequest(tenant_id=tenant_id, period=period)
        return self._call(self._usage.GetStatement, request).statement

    def export(self, tenant_id: str, period: str) -> Iterator:
        """Every credit line of a period (`ExportRow`s, reversals included); they sum
        exactly to the statement's credits."""

        def rows(request, timeout, metadata):
            return list(self._usage.ExportLines(request, timeout=timeout, metadata=metadata))

        request = usage_service_pb2.ExportLinesRequest(tenant_id=tenant_id, period=period)
        for response in self._call(rows, request):
            yield from response.rows

    # Records out.

    def watch_records(self, tenant_ids: Sequence[str] = (), cursor: str = "") -> Iterator:
        """Records in emission order, then live, resuming after `cursor` (a record's
        `cursor`; empty: the oldest retained). A dropped connection is resumed after the
        last record yielded, so nothing is skipped; delivery is at-least-once (dedupe by
        `record_id`). Runs until the caller stops iterating."""
        attempt = 0
        while True:
            request = record_service_pb2.WatchRecordsRequest(tenant_ids=list(tenant_ids), after_cursor=cursor)
            try:
                for response in self._records.WatchRecords(request, metadata=self._metadata):
                    attempt = 0
                    cursor = response.record.cursor
                    yield response.record
                return
            except grpc.RpcError as e:
                error = error_from_rpc(e)
                if not isinstance(error, Unavailable) or attempt >= self.retries:
                    raise error from None
                self._pause(attempt)
                attempt += 1
