//! The live usage page (issue 18, item 4), in headless Chromium (Debian's package): the
//! page renders every tenant the token may read, its figures equal `GetUsage` and
//! `GetStatement`, its 31-day chart equals `GetUsage` by day, and a screenshot is kept
//! (`target/test-artefacts/usage-page.png`). Without a token the figures are refused.

use std::process::Command;

use daybook::api::pb;
use daybook::api::pb::ingest_service_client::IngestServiceClient;
use daybook::api::pb::usage_service_client::UsageServiceClient;
use daybook::server::auth::{hex, sha256};
use rust_decimal::Decimal;
use tonic::transport::Channel;

use super::server::{Harness, http_get};

const TENANTS: &str = r#"
[[tenant]]
id = "acme"
time_zone = "Europe/Berlin"
meter = "dar"
settings = { generative_ai = true, lateness_horizon = "P36500D" }
plan = { kind = "starter", included = 500, alerts = ["0.5", "1.0"] }

[[tenant]]
id = "globex"
time_zone = "America/New_York"
meter = "dar"
settings = { lateness_horizon = "P36500D" }
plan = { kind = "commitment", term_start = "2026-01-01", term_end = "2026-12-31", credits = "2000", overage_price = { USD = "1.10" }, alerts = ["0.5"] }

[[tenant]]
id = "hidden"
time_zone = "UTC"
meter = "dar"
"#;

fn credentials() -> String {
    let entry = |id: &str, scopes: &str| {
        format!("[[credential]]\nid = \"{id}\"\ntoken_sha256 = \"{}\"\n{scopes}\n", hex(&sha256(token(id).as_bytes())))
    };
    entry("ops", "ingest = [\"*\"]\nread = [\"acme\", \"globex\"]") + &entry("acme-reader", "read = [\"acme\"]")
}

fn token(id: &str) -> String {
    format!("dbk_page_test_{id}")
}

fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {}", token("ops")).parse().unwrap());
    request
}

/// Runs headless Chromium on `url` with `args`; returns its standard output.
fn chromium(url: &str, args: &[&str]) -> String {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    // A profile of its own for each run, removed after it: runs may overlap, and a
    // profile left behind is 30 directories in the machine's temporary directory.
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile = std::env::temp_dir().join(format!("daybook-chromium-{}-{run}", std::process::id()));
    let out = Command::new(&binary)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=5000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output();
    let _ = std::fs::remove_dir_all(&profile);
    let out = out.unwrap_or_else(|e| panic!("{binary}: {e} (install Debian's chromium; .ci/run does)"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the element with `data-field="<name>"` in `html`.
fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("data-field=\"{name}\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
    let start = at + html[at..].find('>').unwrap() + 1;
    let end = start + html[start..].find('<').unwrap();
    html[start..end].to_string()
}

/// The section of one tenant in the rendered page.
fn section<'a>(dom: &'a str, tenant: &str) -> Option<&'a str> {
    let start = dom.find(&format!("data-tenant=\"{tenant}\""))?;
    let end = start + dom[start..].find("</section>").unwrap();
    Some(&dom[start..end])
}

/// The chart's bars: (date, interactions, credits).
fn bars(section: &str) -> Vec<(String, u64, Decimal)> {
    let attribute = |rect: &str, name: &str| {
        let at = rect.find(&format!("data-{name}=\"")).unwrap() + name.len() + 7;
        rect[at..at + rect[at..].find('"').unwrap()].to_string()
    };
    section
        .split("<rect ")
        .skip(1)
        .map(|rect| {
            (
                attribute(rect, "date"),
                attribute(rect, "interactions").parse().unwrap(),
                attribute(rect, "credits").parse().unwrap(),
            )
        })
        .collect()
}

async fn usage(channel: &Channel, tenant: &str, from: &str, to: &str, by: pb::UsageGrouping) -> pb::GetUsageResponse {
    let request = pb::GetUsageRequest {
        tenant_id: tenant.into(),
        start_date: from.into(),
        end_date: to.into(),
        group_by: by as i32,
    };
    UsageServiceClient::new(channel.clone()).get_usage(authorized(request)).await.unwrap().into_inner()
}

/// The rendered page's figures of `tenant` equal the API's.
async fn check_tenant(dom: &str, channel: &Channel, tenant: &str, period: &str, from: &str, to: &str) {
    let html = section(dom, tenant).unwrap_or_else(|| panic!("{tenant} is on the page: {dom}"));
    assert_eq!(
        (field(html, "period"), field(html, "from"), field(html, "to")),
        (period.into(), from.into(), to.into())
    );
    let api = usage(channel, tenant, from, to, pb::UsageGrouping::Unspecified).await.usage.unwrap();
    assert!(api.interactions > 0);
    assert_eq!(field(html, "interactions"), api.interactions.to_string(), "{tenant}");
    assert_eq!(field(html, "credits"), api.credits, "{tenant}");
    for meter in &api.meters {
        assert!(html.contains(&format!("<td>{}</td>", meter.credits)), "{tenant}: meter {} credits", meter.meter_id);
    }
    let statement = UsageServiceClient::new(channel.clone())
        .get_statement(authorized(pb::GetStatementRequest { tenant_id: tenant.into(), period: period.into() }))
        .await
        .unwrap()
        .into_inner()
        .statement
        .unwrap();
    let position = field(html, "position");
    match tenant {
        "acme" => assert!(
            position.starts_with(&format!("{} of {} included", statement.dars, statement.included)),
            "{position}"
        ),
        _ => assert!(
            position.starts_with(&format!(
                "{} of {} committed drawn",
                statement.drawn_committed, statement.committed_credits
            )),
            "{position}"
        ),
    }
    for alert in &statement.alerts {
        assert!(html.contains(&format!("{} of {} reached", alert.threshold, alert.base)), "{tenant}: alert {alert:?}");
    }
    // The chart: 31 days to today, each as GetUsage by day has it.
    let chart = bars(html);
    assert_eq!(chart.len(), 31);
    let (first, last) = (&chart[0].0, &chart[30].0);
    let by_day = usage(channel, tenant, first, last, pb::UsageGrouping::Day).await;
    for (date, interactions, credits) in &chart {
        let day = by_day.groups.iter().find(|g| &g.key == date).and_then(|g| g.usage.clone()).unwrap_or_default();
        assert_eq!(*interactions, day.interactions, "{tenant} {date}");
        assert_eq!(*credits, day.credits.parse::<Decimal>().unwrap_or_default(), "{tenant} {date}");
    }
    assert!(chart.iter().any(|(_, n, _)| *n > 0), "{tenant}: the chart shows the month's usage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_page_shows_what_get_usage_answers_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("credentials.toml");
    std::fs::write(&auth_file, credentials()).unwrap();
    let config = daybook::server::config::Config {
        auth_file: Some(auth_file),
        tenants: daybook::tenants::parse_tenants_toml(TENANTS).unwrap(),
        ..Default::default()
    };
    let server = Harness::start(dir.path(), "2026-11-25T12:00:00Z", config).await;
    let channel = server.tcp_channel().await;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let events = [super::crash::events_for("acme", 2000, 3), super::crash::events_for("globex", 800, 4)].concat();
    for chunk in events.chunks(200) {
        let request = authorized(tokio_stream::iter(vec![pb::IngestBatchRequest { events: chunk.to_vec() }]));
        let mut answers = ingest.ingest_batch(request).await.unwrap().into_inner();
        while answers.message().await.unwrap().is_some() {}
    }

    // The page itself is static; its figures need a token with read scope.
    let (status, page) = http_get(server.admin, "/usage").await;
    assert_eq!(status, 200);
    assert!(page.contains("/usage/app.js"));
    assert_eq!(http_get(server.admin, "/usage/data").await.0, 401);

    let url = format!("http://{}/usage#token={}", server.admin, token("ops"));
    let dom = chromium(&url, &["--dump-dom"]);
    check_tenant(&dom, &channel, "acme", "2026-11", "2026-11-01", "2026-11-30").await;
    check_tenant(&dom, &channel, "globex", "2026-01-01/2026-12-31", "2026-01-01", "2026-12-31").await;
    assert!(section(&dom, "hidden").is_none(), "a tenant the token may not read is not shown");
    assert!(field(&dom, "interactions").parse::<u64>().is_ok());

    // A narrower token sees only its tenant; no token is asked for one.
    let dom = chromium(&format!("http://{}/usage#token={}", server.admin, token("acme-reader")), &["--dump-dom"]);
    assert!(section(&dom, "acme").is_some() && section(&dom, "globex").is_none());
    let dom = chromium(&format!("http://{}/usage", server.admin), &["--dump-dom"]);
    assert!(section(&dom, "acme").is_none() && dom.contains("a token with read scope is needed"), "{dom}");

    // More events: the page shows them on its next refresh.
    let more = super::crash::events_for("acme", 300, 77)
        .into_iter()
        .map(|mut e| {
            e.event_id = format!("more-{}", e.event_id);
            e
        })
        .collect::<Vec<_>>();
    let request = authorized(tokio_stream::iter(vec![pb::IngestBatchRequest { events: more }]));
    let mut answers = ingest.ingest_batch(request).await.unwrap().into_inner();
    while answers.message().await.unwrap().is_some() {}
    let dom = chromium(&url, &["--dump-dom"]);
    check_tenant(&dom, &channel, "acme", "2026-11", "2026-11-01", "2026-11-30").await;

    // The screenshot, kept as a test artefact.
    let artefacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let png = artefacts.join("usage-page.png");
    let _ = std::fs::remove_file(&png);
    chromium(&url, &["--window-size=1280,1600", &format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "{} bytes", bytes.len());
    server.stop().await;
}
