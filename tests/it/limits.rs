//! Issue 17, item 0: no input may panic, wrap or round money. Amounts, counts and
//! timestamps at and beyond the documented limits (`proto/daybook/v1/events.proto`,
//! `rating::money`): what is beyond is refused with INVALID_ARGUMENT naming the field and
//! changes nothing; what is within is billed exactly.

use daybook::rating::Engine;
use daybook::rating::outcome::Code;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::rules::{engine_with, msg, raw, with};

fn acme() -> Engine {
    engine_with(json!({"id": "acme", "time_zone": "UTC", "meter": "dar", "settings": {}}))
}

fn priced(id: &str, amount: &str) -> Value {
    with(
        msg(id, "2025-06-10T10:00:00Z", "bot", &format!("c-{id}"), "A"),
        json!({"provider_price": {"amount": amount, "currency": "USD"}}),
    )
}

fn invocations(id: &str, count: i64) -> Value {
    json!({"id": id, "at": "2025-06-10T10:00:00Z", "type": "function_invocations", "count": count})
}

/// The field named by a refusal, or `None` for an accepted event.
fn refused_field(engine: &Engine, event: Value) -> Option<String> {
    match engine.ingest(raw(event), None, &mut Vec::new()) {
        Ok(_) => None,
        Err(refusal) => {
            assert_eq!(refusal.code, Code::InvalidArgument, "{refusal:?}");
            Some(refusal.violations.first().map(|v| v.field.clone()).unwrap_or_default())
        }
    }
}

fn pass_through(engine: &Engine) -> Decimal {
    let usage = engine.usage("acme", None, None).unwrap();
    usage.pass_through.iter().map(|(_, a)| a).sum()
}

#[test]
fn t_6_seven_28_digit_prices_are_refused_and_the_tenant_keeps_answering() {
    let engine = acme();
    for n in 0..7 {
        let field = refused_field(&engine, priced(&format!("p{n}"), "9999999999999999999999999999"));
        assert_eq!(field.as_deref(), Some("message.provider_price.amount"));
    }
    // Nothing was reserved, and the tenant still rates and answers.
    assert_eq!(refused_field(&engine, priced("p0", "0.0079")), None);
    assert_eq!(pass_through(&engine), Decimal::new(9085, 6));
}

#[test]
fn t_6_an_amount_is_refused_rather_than_rounded() {
    let engine = acme();
    for amount in ["0.0000000000000000000000000001", "12345678901234567890123456789", "1.00000000001"] {
        assert_eq!(refused_field(&engine, priced(amount, amount)).as_deref(), Some("message.provider_price.amount"));
    }
    // The smallest amount billed exactly: its 15% stays exact.
    assert_eq!(refused_field(&engine, priced("tiny", "0.0000000001")), None);
    assert_eq!(pass_through(&engine), Decimal::new(115, 12));
}

#[test]
fn cr_8_function_counts_never_wrap() {
    let engine = acme();
    for n in 0..3 {
        let field = refused_field(&engine, invocations(&format!("f{n}"), i64::MAX));
        assert_eq!(field.as_deref(), Some("function_invocations.count"));
    }
    // A month takes up to 10^15 invocations, in events of up to 10^12; the one past it is
    // refused and changes nothing.
    for n in 0..1000 {
        assert_eq!(refused_field(&engine, invocations(&format!("g{n}"), 1_000_000_000_000)), None);
    }
    assert_eq!(refused_field(&engine, invocations("over", 1)).as_deref(), Some("function_invocations.count"));
    let usage = engine.usage("acme", None, None).unwrap();
    // (10^15 - 150,000 free) / 250 per credit.
    assert_eq!(usage.credits(), Decimal::from(3_999_999_999_400u64));
}

#[test]
fn cr_9_a_month_of_pass_through_stops_at_its_limit_exactly() {
    let engine = acme();
    let price = "999999999999.9999999999";
    let charge = Decimal::from_str_exact(price).unwrap() * Decimal::new(115, 2);
    let mut accepted = 0u32;
    for n in 0..900 {
        match refused_field(&engine, priced(&format!("p{n}"), price)) {
            None => accepted += 1,
            Some(field) => {
                assert_eq!(field, "message.provider_price.amount");
                break;
            }
        }
    }
    // 869 charges of 1.15 x 10^12 fit under 10^15; the 870th would pass it.
    assert_eq!(accepted, 869);
    assert_eq!(pass_through(&engine), charge * Decimal::from(accepted));
    // Another currency has a limit of its own, and events without a price go on.
    let eur = with(priced("eur", "1"), json!({"provider_price": {"amount": "1", "currency": "EUR"}}));
    assert_eq!(refused_field(&engine, eur), None);
    assert_eq!(refused_field(&engine, msg("plain", "2025-06-10T11:00:00Z", "consumer", "z", "B")), None);
    // The next month starts from nothing.
    let july = with(priced("july", price), json!({"at": "2025-07-01T00:00:00Z"}));
    assert_eq!(refused_field(&engine, july), None);
}

#[test]
fn t_6_a_second_of_60_that_was_no_leap_second_is_refused() {
    let engine = acme();
    let event = msg("leap", "2025-06-10T11:34:60Z", "consumer", "c1", "A");
    assert_eq!(refused_field(&engine, event).as_deref(), Some("event_time"));
}

/// An amount as a caller may spell it: up to 30 digits, up to 30 of them after the point.
fn amount_text() -> impl Strategy<Value = String> {
    (prop::collection::vec(0u8..10, 1..31), 0usize..31).prop_map(|(digits, point)| {
        let digits: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        let point = point.min(digits.len() - 1);
        if point == 0 {
            digits
        } else {
            format!("{}.{}", &digits[..digits.len() - point], &digits[digits.len() - point..])
        }
    })
}

/// Whether daybook bills `text` exactly: below 10^12, at most 10 significant decimals.
fn within_limits(text: &str) -> Option<Decimal> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac = frac.trim_end_matches('0');
    let whole = whole.trim_start_matches('0');
    (whole.len() <= 12 && frac.len() <= 10).then(|| Decimal::from_str_exact(&format!("0{whole}.{frac}0")).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Amounts and counts at and beyond the limits: each is refused exactly when it is
    /// beyond them, and the totals are the exact sums of what was accepted.
    #[test]
    fn t_6_amounts_and_counts_at_and_beyond_the_limits(
        amounts in prop::collection::vec(amount_text(), 1..20),
        counts in prop::collection::vec(prop_oneof![0i64..1000, 999_999_999_000i64..1_000_000_001_000, Just(i64::MAX)], 0..5),
    ) {
        let engine = acme();
        let mut expected = Decimal::ZERO;
        for (n, amount) in amounts.iter().enumerate() {
            let field = refused_field(&engine, priced(&format!("p{n}"), amount));
            match within_limits(amount) {
                Some(value) => {
                    prop_assert_eq!(field, None, "{} is within the limits", amount);
                    expected += value * Decimal::new(115, 2);
                }
                None => prop_assert_eq!(field.as_deref(), Some("message.provider_price.amount"), "{}", amount),
            }
        }
        prop_assert_eq!(pass_through(&engine), expected);
        let mut month = 0u64;
        for (n, count) in counts.iter().enumerate() {
            let field = refused_field(&engine, invocations(&format!("f{n}"), *count));
            prop_assert_eq!(field.is_none(), *count <= 1_000_000_000_000, "count {}", count);
            if field.is_none() {
                month += *count as u64;
            }
        }
        let usage = engine.usage("acme", None, None).unwrap();
        prop_assert!(!usage.inexact);
        let functions = Decimal::from(month.saturating_sub(150_000)) / Decimal::from(250);
        prop_assert_eq!(usage.credits[daybook::rating::ledger::FUNCTIONS_BUCKET], functions);
    }
}

/// Over gRPC: a request over `max_message_bytes` is RESOURCE_EXHAUSTED, unary or
/// streamed (OUT_OF_RANGE would read as T-4); prices past the limits are refused by field
/// and the tenant goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_6_oversized_requests_are_resource_exhausted_and_no_price_poisons_a_tenant() {
    use daybook::api::pb;
    use daybook::api::pb::ingest_service_client::IngestServiceClient;
    use daybook::server::config::Config;
    use tonic::Code as GrpcCode;

    use super::server::{Harness, create, message, tenant, usage};

    let dir = tempfile::tempdir().unwrap();
    let config = Config { max_message_bytes: 4096, ..Config::default() };
    let server = Harness::start(dir.path(), "2025-06-10T12:00:00Z", config).await;
    let channel = server.tcp_channel().await;
    create(&channel, tenant("acme", "UTC", pb::Meter::Dar)).await;
    let mut ingest = IngestServiceClient::new(channel.clone());

    let mut big = message("acme", "big", "2025-06-10T10:00:00Z", "c1", pb::SenderRole::Consumer);
    big.message.as_mut().unwrap().conversation_id = "x".repeat(10_000);
    let status = ingest.ingest_message(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), GrpcCode::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_message_bytes"), "{}", status.message());

    let event = pb::Event {
        tenant_id: big.tenant_id.clone(),
        event_id: big.event_id.clone(),
        event_time: big.event_time.clone(),
        kind: big.message.clone().map(pb::event::Kind::Message),
    };
    let batch = pb::IngestBatchRequest { events: vec![event] };
    let mut answers = ingest.ingest_batch(tokio_stream::iter(vec![batch])).await.unwrap().into_inner();
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), GrpcCode::ResourceExhausted, "{status:?}");

    for n in 0..7 {
        let mut priced = message("acme", &format!("p{n}"), "2025-06-10T10:00:00Z", "c1", pb::SenderRole::Bot);
        priced.message.as_mut().unwrap().provider_price =
            Some(pb::Money { amount: "9999999999999999999999999999".into(), currency: "USD".into() });
        let status = ingest.ingest_message(priced).await.unwrap_err();
        assert_eq!(status.code(), GrpcCode::InvalidArgument);
    }
    let ok = ingest.ingest_message(message("acme", "ok", "2025-06-10T10:00:00Z", "c1", pb::SenderRole::Consumer)).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(usage(&channel, "acme").await.interactions, 1);
    server.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Timestamps at and beyond the edges of every field: accepted exactly when they
    /// name an instant that exists (a second of 60 only at an inserted leap second) in the
    /// years 1900 to 2200, and a refusal names `event_time` and changes nothing.
    #[test]
    fn t_6_timestamps_at_and_beyond_the_edges(
        year in prop_oneof![1899i32..1902, 1970i32..2030, 2199i32..2202],
        month in 0u32..14, day in 0u32..33, hour in 0u32..25, minute in 0u32..61,
        second in prop_oneof![0u32..3, 58u32..62],
        leap in any::<bool>(),
    ) {
        // Half the cases aim at the leap-second dates themselves.
        let (year, month, day, hour, minute) = if leap { (2016, 12, 31, 23, 59) } else { (year, month, day, hour, minute) };
        let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z");
        let exists = chrono::NaiveDate::from_ymd_opt(year, month, day).is_some()
            && hour < 24 && minute < 60
            && (second < 60 || (second == 60 && (hour, minute) == (23, 59) && daybook::rating::time::LEAP_SECOND_DATES.contains(&(year, month, day))))
            && (1900..=2200).contains(&year);
        let engine = acme();
        let field = refused_field(&engine, msg("t", &text, "consumer", "c1", "A"));
        prop_assert_eq!(field.is_none(), exists, "{}", text);
        if !exists {
            prop_assert_eq!(field.as_deref(), Some("event_time"));
            prop_assert_eq!(engine.usage("acme", None, None).unwrap().interactions, 0);
        }
    }
}
