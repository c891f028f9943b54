//! GetUsage broken down by day, meter, channel and integration (issue 18, item 5): in
//! both stores, for a
//! tenant of one meter with co-browse, Functions and pass-through, and for one of several
//! meters (interactions, units, outcomes with revocations, voids), the groups sum exactly
//! to the ungrouped usage, and a range without both ends is refused for days.

use std::collections::BTreeMap;

use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;
use daybook::api::pb::usage_service_client::UsageServiceClient;
use rust_decimal::Decimal;

use super::server::{Harness, Store};

const TENANTS: &str = r#"
[[tenant]]
id = "acme"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P36500D" }

[[tenant]]
id = "multi"
time_zone = "America/New_York"
meters = [
  { id = "dar", preset = "dar" },
  { id = "wa", preset = "event", allowance = 5, units_per_credit = 4, filter = { channels = ["whatsapp"] } },
  { id = "fin", preset = "outcome", prices = { resolution = "0.99", handoff = "0.25" } },
]
settings = { lateness_horizon = "P36500D" }
"#;

/// What a list of usages adds up to, in comparable form.
#[derive(Debug, Default, PartialEq)]
struct Sum {
    interactions: u64,
    credits: Decimal,
    by_kind: BTreeMap<(i32, i32), Decimal>,
    pass_through: BTreeMap<String, Decimal>,
    meters: BTreeMap<String, (i64, u64, Decimal)>,
}

fn sum<'a>(usages: impl IntoIterator<Item = &'a pb::Usage>) -> Sum {
    let mut s = Sum::default();
    for u in usages {
        s.interactions += u.interactions;
        s.credits += u.credits.parse::<Decimal>().unwrap();
        for k in &u.credits_by_kind {
            *s.by_kind.entry((k.kind, k.applies_to)).or_default() += k.credits.parse::<Decimal>().unwrap();
        }
        for p in &u.pass_through {
            *s.pass_through.entry(p.currency.clone()).or_default() += p.amount.parse::<Decimal>().unwrap();
        }
        for m in &u.meters {
            let e = s.meters.entry(m.meter_id.clone()).or_default();
            e.0 += m.interactions;
            e.1 += m.units;
            e.2 += m.credits.parse::<Decimal>().unwrap();
        }
    }
    s.by_kind.retain(|_, c| !c.is_zero());
    s
}

async fn get(
    client: &mut UsageServiceClient<tonic::transport::Channel>,
    tenant: &str,
    from: &str,
    to: &str,
    by: pb::UsageGrouping,
) -> Result<pb::GetUsageResponse, tonic::Status> {
    let request = pb::GetUsageRequest {
        tenant_id: tenant.into(),
        start_date: from.into(),
        end_date: to.into(),
        group_by: by as i32,
    };
    client.get_usage(request).await.map(|r| r.into_inner())
}

async fn usage_groups_sum_to_the_totals(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let tenants = daybook::tenants::parse_tenants_toml(TENANTS).unwrap();
    let config = daybook::server::config::Config { tenants, ..store.config() };
    let server = Harness::start(dir.path(), "2026-12-01T00:00:00Z", config).await;
    let channel = server.tcp_channel().await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let events = [super::crash::events_for("acme", 3000, 5), super::tenant_log::events("multi", 1500, 9)].concat();
    for chunk in events.chunks(250) {
        let request = tokio_stream::iter(vec![pb::IngestBatchRequest { events: chunk.to_vec() }]);
        let mut answers = ingest.ingest_batch(request).await.unwrap().into_inner();
        while answers.message().await.unwrap().is_some() {}
    }
    let mut usage = UsageServiceClient::new(channel);
    for (tenant, from, to) in [("acme", "2026-11-01", "2026-11-30"), ("multi", "2026-10-31", "2026-11-21")] {
        let whole = get(&mut usage, tenant, from, to, pb::UsageGrouping::Unspecified).await.unwrap();
        assert!(whole.groups.is_empty());
        let total = whole.usage.unwrap();
        assert!(total.interactions > 0 && total.credits != "0", "{tenant}: {total:?}");

        let by_day = get(&mut usage, tenant, from, to, pb::UsageGrouping::Day).await.unwrap();
        assert_eq!(by_day.usage.as_ref(), Some(&total), "{tenant}: the same totals alongside the groups");
        assert!(by_day.groups.len() > 5, "{tenant}: {} days", by_day.groups.len());
        assert!(by_day.groups.windows(2).all(|w| w[0].key < w[1].key), "in date order");
        assert_eq!(sum(by_day.groups.iter().filter_map(|g| g.usage.as_ref())), sum([&total]), "{tenant} by day");
        // One day's group is that day's usage.
        let day = &by_day.groups[2];
        let alone = get(&mut usage, tenant, &day.key, &day.key, pb::UsageGrouping::Unspecified).await.unwrap();
        assert_eq!(alone.usage.as_ref(), day.usage.as_ref());

        let by_meter = get(&mut usage, tenant, from, to, pb::UsageGrouping::Meter).await.unwrap();
        assert_eq!(by_meter.usage.as_ref(), Some(&total));
        let mut grouped = sum(by_meter.groups.iter().filter_map(|g| g.usage.as_ref()));
        let mut expected = sum([&total]);
        if tenant == "multi" {
            // Several meters keep no credits by kind apart.
            assert_eq!(by_meter.groups.iter().filter(|g| !g.key.is_empty()).count(), 3);
            (grouped.by_kind, expected.by_kind) = (BTreeMap::new(), BTreeMap::new());
        }
        assert_eq!(grouped, expected, "{tenant} by meter");
        // By channel and by integration, read from the records: the same sums (a group
        // carries no meters breakdown).
        for (by, keys) in [
            (pb::UsageGrouping::Channel, &["", "web", "whatsapp"][..]),
            (pb::UsageGrouping::Integration, &["", "wa", "wa-1"][..]),
        ] {
            let answer = get(&mut usage, tenant, from, to, by).await.unwrap();
            assert_eq!(answer.usage.as_ref(), Some(&total));
            assert!(
                answer.groups.iter().all(|g| keys.contains(&g.key.as_str())),
                "{tenant} {by:?}: {:?}",
                answer.groups
            );
            assert!(answer.groups.iter().any(|g| !g.key.is_empty()), "{tenant} {by:?}: some group has an origin");
            let mut grouped = sum(answer.groups.iter().filter_map(|g| g.usage.as_ref()));
            let mut expected = sum([&total]);
            (grouped.meters, expected.meters) = (BTreeMap::new(), BTreeMap::new());
            assert_eq!(grouped, expected, "{tenant} by {by:?}");
            if tenant == "acme" {
                // Every message is on WhatsApp through "wa": the interactions and the
                // pass-through are theirs; what no message started (co-browse, Functions)
                // has no origin.
                let origin = if by == pb::UsageGrouping::Channel { "whatsapp" } else { "wa" };
                let of = |key: &str| answer.groups.iter().find(|g| g.key == key).and_then(|g| g.usage.clone()).unwrap();
                let (theirs, none) = (of(origin), of(""));
                assert_eq!((theirs.interactions, &theirs.pass_through), (total.interactions, &total.pass_through));
                let kinds: Vec<i32> = none.credits_by_kind.iter().map(|k| k.kind).collect();
                assert_eq!(kinds, [pb::LineKind::Cobrowse as i32, pb::LineKind::Functions as i32], "{none:?}");
                assert_eq!(none.interactions, 0);
            }
        }
        let rest = by_meter.groups.iter().find(|g| g.key.is_empty());
        if tenant == "acme" {
            let rest = rest.expect("co-browse, Functions and pass-through belong to no meter").usage.as_ref().unwrap();
            assert!(!rest.pass_through.is_empty() && rest.meters.is_empty());
        }
    }

    // A by-day breakdown needs both ends, at most 366 days apart; nothing else changes.
    for (from, to, field) in [("", "2026-11-30", "start_date"), ("2025-01-01", "2026-11-30", "end_date")] {
        let refused = get(&mut usage, "acme", from, to, pb::UsageGrouping::Day).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(field) || format!("{refused:?}").contains(field), "{refused:?}");
    }
    let unknown = pb::GetUsageRequest { tenant_id: "acme".into(), group_by: 99, ..Default::default() };
    assert_eq!(usage.get_usage(unknown).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    server.stop().await;
}

mod usage_groups_sum_to_the_totals {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded() {
        super::usage_groups_sum_to_the_totals(super::Store::Embedded).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        let node = super::super::redis_store::RedisNode::start();
        super::usage_groups_sum_to_the_totals(super::Store::Redis(node)).await
    }
}
