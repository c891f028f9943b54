"""A real client in another language: Python grpcio with stubs generated from proto/.

Runs one conversation through a daybook server and checks each outcome.
Usage: conversation.py STUBS_DIR HOST:PORT
"""

import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402

from daybook.v1 import events_pb2, ingest_service_pb2, ingest_service_pb2_grpc  # noqa: E402
from daybook.v1 import tenant_service_pb2, tenant_service_pb2_grpc, tenants_pb2  # noqa: E402
from daybook.v1 import records_pb2, usage_service_pb2, usage_service_pb2_grpc  # noqa: E402


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[2])
    tenants = tenant_service_pb2_grpc.TenantServiceStub(channel)
    ingest = ingest_service_pb2_grpc.IngestServiceStub(channel)
    usage = usage_service_pb2_grpc.UsageServiceStub(channel)

    tenants.CreateTenant(
        tenant_service_pb2.CreateTenantRequest(
            tenant=tenants_pb2.Tenant(
                tenant_id="py-acme",
                meter=records_pb2.METER_DAR,
                settings=tenants_pb2.Settings(time_zone="America/New_York", intent_listening=True),
            )
        )
    )

    def message(event_id, at, role):
        return ingest_service_pb2.IngestMessageRequest(
            tenant_id="py-acme",
            event_id=event_id,
            event_time=at,
            message=events_pb2.MessageEvent(
                consumer_id="c1",
                conversation_id="A",
                sender_role=role,
                channel=events_pb2.CHANNEL_WEB,
                integration_id="web-1",
            ),
        )

    first = ingest.IngestMessage(message("m1", "2025-06-19T23:58:00-04:00", events_pb2.SENDER_ROLE_CONSUMER)).outcome
    assert first.disposition == events_pb2.DISPOSITION_NEW_INTERACTION, first
    assert first.interactions[0].period.label == "2025-06-19", first
    assert [line.credits for line in first.lines] == ["1", "0.2"], first.lines

    bot = ingest.IngestMessage(message("m2", "2025-06-19T23:59:00-04:00", events_pb2.SENDER_ROLE_BOT)).outcome
    assert bot.disposition == events_pb2.DISPOSITION_ALREADY_COUNTED, bot
    assert list(bot.counted_in) == [first.interactions[0].interaction_id], bot

    # Past local midnight the conversation incurs a second DAR (DAR-3).
    agent = ingest.IngestMessage(message("m3", "2025-06-20T00:03:00-04:00", events_pb2.SENDER_ROLE_AGENT)).outcome
    assert agent.disposition == events_pb2.DISPOSITION_NEW_INTERACTION, agent
    assert agent.interactions[0].period.label == "2025-06-20", agent

    system = ingest.IngestMessage(message("m4", "2025-06-20T00:04:00-04:00", events_pb2.SENDER_ROLE_SYSTEM)).outcome
    assert system.disposition == events_pb2.DISPOSITION_NOT_BILLABLE, system
    assert system.not_billable_reason == events_pb2.NOT_BILLABLE_REASON_SYSTEM_MESSAGE, system

    retry = ingest.IngestMessage(message("m1", "2025-06-20T03:58:00Z", events_pb2.SENDER_ROLE_CONSUMER)).outcome
    assert retry.retry and retry.interactions == first.interactions, retry

    try:
        ingest.IngestMessage(message("m5", "2025-06-20T00:05:00", events_pb2.SENDER_ROLE_CONSUMER))
        raise AssertionError("a naive timestamp must be refused")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert "event_time" in error.details(), error.details()

    try:
        ingest.IngestMessage(message("m1", "2025-06-20T00:06:00-04:00", events_pb2.SENDER_ROLE_CONSUMER))
        raise AssertionError("a reused id with another payload must be refused")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS, error

    total = usage.GetUsage(usage_service_pb2.GetUsageRequest(tenant_id="py-acme")).usage
    assert total.interactions == 2, total
    assert total.credits == "2.4", total
    print("python client: conversation checked")


if __name__ == "__main__":
    main()
