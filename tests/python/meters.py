"""RULEBOOK part two from Python grpcio, with stubs generated from proto/.

A tenant with a dar meter and an outcome meter: an outcome is billed, revoked, and the
next one billed instead (OUT-1..OUT-4); a consumer is voided (COR); per-meter usage and
the export of the month's lines (which sum to the statement) are checked.
Usage: meters.py STUBS_DIR HOST:PORT
"""

import sys
from decimal import Decimal

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402

from daybook.v1 import events_pb2, ingest_service_pb2, ingest_service_pb2_grpc  # noqa: E402
from daybook.v1 import records_pb2, tenant_service_pb2, tenant_service_pb2_grpc, tenants_pb2  # noqa: E402
from daybook.v1 import usage_service_pb2, usage_service_pb2_grpc  # noqa: E402

TENANT = "py-meters"


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[2])
    tenants = tenant_service_pb2_grpc.TenantServiceStub(channel)
    ingest = ingest_service_pb2_grpc.IngestServiceStub(channel)
    usage = usage_service_pb2_grpc.UsageServiceStub(channel)

    tenants.CreateTenant(
        tenant_service_pb2.CreateTenantRequest(
            tenant=tenants_pb2.Tenant(
                tenant_id=TENANT,
                settings=tenants_pb2.Settings(time_zone="America/Chicago"),
                meters=[
                    tenants_pb2.MeterDefinition(meter_id="dar", preset=records_pb2.METER_DAR),
                    tenants_pb2.MeterDefinition(
                        meter_id="fin",
                        preset=records_pb2.METER_OUTCOME,
                        prices={"resolution": "0.99"},
                        revocation_window="PT72H",
                    ),
                ],
            )
        )
    )

    def message(event_id, at, consumer, conversation):
        return ingest_service_pb2.IngestMessageRequest(
            tenant_id=TENANT,
            event_id=event_id,
            event_time=at,
            message=events_pb2.MessageEvent(
                consumer_id=consumer,
                conversation_id=conversation,
                sender_role=events_pb2.SENDER_ROLE_CONSUMER,
                channel=events_pb2.CHANNEL_WEB,
                integration_id="web-1",
            ),
        )

    def outcome(event_id, at, conversation, revoked=False):
        return ingest_service_pb2.IngestOutcomeRequest(
            tenant_id=TENANT,
            event_id=event_id,
            event_time=at,
            outcome=events_pb2.OutcomeEvent(
                consumer_id="c1", conversation_id=conversation, outcome_type="resolution", revoked=revoked
            ),
        )

    first = ingest.IngestMessage(message("m1", "2025-06-10T10:00:00-05:00", "c1", "A")).outcome
    assert first.disposition == events_pb2.DISPOSITION_NEW_INTERACTION, first
    assert first.interactions[0].meter_id == "dar", first
    ingest.IngestMessage(message("m2", "2025-06-11T10:00:00-05:00", "loadgen", "L"))

    billed = ingest.IngestOutcome(outcome("o1", "2025-06-10T10:30:00-05:00", "A")).outcome
    assert billed.disposition == events_pb2.DISPOSITION_NEW_INTERACTION, billed
    assert billed.interactions[0].outcome_type == "resolution", billed
    assert [line.credits for line in billed.lines] == ["0.99"], billed.lines

    # The resolution did not hold: its line is withdrawn (OUT-3, OUT-4)...
    revoked = ingest.IngestOutcome(outcome("x1", "2025-06-11T09:00:00-05:00", "A", revoked=True)).outcome
    reversal = [line for line in revoked.lines if line.reverses_line_id]
    assert reversal and reversal[0].reverses_line_id == billed.lines[0].line_id, revoked
    assert reversal[0].credits == "-0.99" and reversal[0].event_id == "x1", reversal
    # ...and the next resolution is billed instead.
    again = ingest.IngestOutcome(outcome("o2", "2025-06-12T09:00:00-05:00", "A")).outcome
    assert again.disposition == events_pb2.DISPOSITION_NEW_INTERACTION, again

    # An unpriced type is refused, naming the field (OUT-2).
    try:
        bad = outcome("o3", "2025-06-12T09:00:00-05:00", "A")
        bad.outcome.outcome_type = "escalation"
        ingest.IngestOutcome(bad)
        raise AssertionError("an unpriced outcome type was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e

    # A load generator's traffic is voided (COR).
    voided = ingest.IngestVoid(
        ingest_service_pb2.IngestVoidRequest(
            tenant_id=TENANT,
            event_id="v1",
            event_time="2025-06-20T09:00:00-05:00",
            void=events_pb2.VoidEvent(
                **{"from": "2025-06-01"}, to="2025-06-30", reason="load test", consumer_id="loadgen"
            ),
        )
    ).outcome
    assert voided.disposition == events_pb2.DISPOSITION_NOT_BILLABLE, voided
    assert voided.not_billable_reason == events_pb2.NOT_BILLABLE_REASON_CORRECTION, voided
    assert [line.credits for line in voided.lines] == ["-1"], voided.lines

    got = usage.GetUsage(usage_service_pb2.GetUsageRequest(tenant_id=TENANT)).usage
    meters = {m.meter_id: m for m in got.meters}
    assert meters["dar"].interactions == 1 and Decimal(meters["dar"].credits) == 1, got
    assert meters["fin"].interactions == 1 and Decimal(meters["fin"].credits) == Decimal("0.99"), got
    assert Decimal(got.credits) == Decimal("1.99"), got

    listed = usage.ListInteractions(usage_service_pb2.ListInteractionsRequest(tenant_id=TENANT)).interactions
    assert [i.key.consumer_id for i in listed if i.voided_by == "v1"] == ["loadgen"], listed

    statement = usage.GetStatement(usage_service_pb2.GetStatementRequest(tenant_id=TENANT, period="2025-06")).statement
    rows = [
        row
        for batch in usage.ExportLines(usage_service_pb2.ExportLinesRequest(tenant_id=TENANT, period="2025-06"))
        for row in batch.rows
    ]
    assert sum(Decimal(row.line.credits) for row in rows) == Decimal(statement.credits), (rows, statement)
    assert any(row.line.reverses_line_id for row in rows), rows
    print("python client: meters checked")


if __name__ == "__main__":
    main()
