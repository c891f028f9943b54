//! The operator's path through the real binary (issue 17): one process per data
//! directory, a bound address named with the setting that chose it, and a Redis password
//! that appears in no output of a run.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `daybook serve` with `args`, its stderr collected line by line.
struct Serving {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serving {
    fn start(args: &[&str]) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_daybook"))
            .arg("serve")
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Serving { child, log }
    }

    /// Waits for a log line containing `text`; returns the rest of that line after it.
    fn wait_for(&self, text: &str) -> String {
        for _ in 0..600 {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.split_once(text).unwrap().1.to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no `{text}` in {:?}", self.log.lock().unwrap());
    }

    fn output(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_daybook")).args(args).output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_second_server_on_a_data_directory_is_refused_naming_it_and_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let first = Serving::start(&["--listen", "127.0.0.1:0", "--admin", "off", "--data-dir", data]);
    first.wait_for("gRPC listening on ");
    let (code, output) = run(&["serve", "--listen", "127.0.0.1:0", "--admin", "off", "--data-dir", data]);
    assert_eq!(code, Some(75), "{output}");
    assert!(output.contains(data), "{output}");
    assert!(output.contains(&format!("pid {}", first.child.id())), "{output}");
    // The first one's socket and journal are untouched: it still serves.
    drop(first);
    let again = Serving::start(&["--listen", "127.0.0.1:0", "--admin", "off", "--data-dir", data]);
    again.wait_for("gRPC listening on ");
}

#[test]
fn an_address_in_use_names_the_setting_that_chose_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, output) = run(&["serve", "--listen", "127.0.0.1:0", "--admin", &address, "--data-dir", data]);
    assert_eq!(code, Some(69), "{output}");
    for named in [address.as_str(), "`admin`", "--admin", "DAYBOOK_ADMIN"] {
        assert!(output.contains(named), "{named} in {output}");
    }
}

/// A Redis with a password: every output of a run (logs, `/ready`, `/metrics`, a config
/// error, the check) shows the URL without it.
#[test]
fn a_redis_password_appears_in_no_output() {
    const PASSWORD: &str = "s3cret-Pa55word";
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--requirepass", PASSWORD])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut seen = String::new();

    // Redis not answering yet, or never: the waiting lines name it without the password.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead_url = format!("redis://:{PASSWORD}@127.0.0.1:{dead}");
    let elsewhere = tempfile::tempdir().unwrap();
    let waiting = Serving::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "off",
        "--data-dir",
        elsewhere.path().to_str().unwrap(),
        "--redis",
        &dead_url,
    ]);
    waiting.wait_for("waiting for redis at redis://:***@127.0.0.1");
    seen.push_str(&waiting.output());
    drop(waiting);

    let serving =
        Serving::start(&["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data-dir", data, "--redis", &url]);
    let admin = serving.wait_for("admin HTTP on http://");
    serving.wait_for("gRPC listening on ");
    for path in ["/ready", "/metrics", "/live"] {
        let body = http_get(admin.trim(), path);
        assert!(!body.is_empty(), "{path}");
        seen.push_str(&body);
    }
    seen.push_str(&serving.output());
    drop(serving);

    for args in [
        vec!["serve", "--check-config", "--redis", &url],
        vec!["serve", "--check-config", "--redis", "redis+cluster://:s3cret-Pa55word@"],
        vec!["serve", "--check-config", "--redis", "http://:s3cret-Pa55word@cache:1"],
    ] {
        seen.push_str(&run(&args).1);
    }
    let _ = redis.kill();
    let _ = redis.wait();
    assert!(seen.contains("***"), "the URL is shown, redacted: {seen}");
    assert!(!seen.contains(PASSWORD), "the password leaked: {seen}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Exit codes a script can act on: usage errors are 64 (not clap's 2), a journal that is
/// not there is 66, a replay with bad lines is 65 after its summary (0 when the caller
/// accepts them), and a reader that closes the pipe early ends the run quietly.
#[test]
fn exit_codes_are_honest_and_a_closed_pipe_is_quiet() {
    assert_eq!(run(&["serve", "--no-such-flag"]).0, Some(64));
    assert_eq!(run(&["no-such-command"]).0, Some(64));
    let (code, help) = run(&["--help"]);
    assert_eq!(code, Some(0), "{help}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let (code, output) = run(&["journal", "verify", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(code, Some(66), "{output}");
    assert!(output.contains("nothing-here"), "{output}");

    let tenants = dir.path().join("tenants.toml");
    std::fs::write(&tenants, "[[tenant]]\nid = \"acme\"\ntime_zone = \"UTC\"\nmeter = \"dar\"\n").unwrap();
    let events = dir.path().join("events.jsonl");
    let mut lines: Vec<String> = (0..20_000)
        .map(|n| {
            format!(
                r#"{{"tenant_id":"acme","event_id":"e{n}","event_time":"2025-06-10T10:00:00Z","message":{{"consumer_id":"c{n}","conversation_id":"x","sender_role":"SENDER_ROLE_CONSUMER","channel":"CHANNEL_WEB"}}}}"#
            )
        })
        .collect();
    lines.insert(3, "{not json".into());
    std::fs::write(&events, lines.join("\n")).unwrap();
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--quiet", "--tenants", tenants.to_str().unwrap(), events.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let records = dir.path().join("records.jsonl");
    let args = replay(&["--out", records.to_str().unwrap()]);
    let (code, output) = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(65), "{output}");
    assert!(output.contains("line 4"), "{output}");
    assert!(output.contains("20000") || output.contains("20,000"), "the summary comes first: {output}");
    let args = replay(&["--out", records.to_str().unwrap(), "--allow-bad-lines"]);
    assert_eq!(run(&args.iter().map(String::as_str).collect::<Vec<_>>()).0, Some(0));

    // `daybook replay --out - | head -1`: the reader leaves after one record.
    let mut child = Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(replay(&["--out", "-", "--allow-bad-lines"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("record_id") || first.starts_with('{'), "{first}");
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// `--check-config` checks everything a start would read before binding: the credentials
/// file and the TLS files too, and durations are spelled once per unit.
#[test]
fn check_config_reads_the_credentials_and_tls_files_and_refuses_repeated_units() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials.toml");
    std::fs::write(&creds, "[[credential]]\nid = \"x\"\ntoken_sha256 = \"not-a-digest\"\n").unwrap();
    let (code, output) = run(&["serve", "--check-config", "--auth-file", creds.to_str().unwrap()]);
    assert_eq!(code, Some(64), "{output}");
    assert!(output.contains("auth_file"), "{output}");

    let missing = dir.path().join("missing.pem");
    let (code, output) = run(&[
        "serve",
        "--check-config",
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(64), "{output}");
    assert!(output.contains("missing.pem"), "{output}");

    let out = Command::new(env!("CARGO_BIN_EXE_daybook"))
        .args(["serve", "--check-config"])
        .env("DAYBOOK_GRACE_PERIOD", "PT1H1H")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DAYBOOK_GRACE_PERIOD"));
    for (key, value, valid) in [
        ("DAYBOOK_LATENCY_BUCKETS", "0.0001,0.001,0.01", true),
        ("DAYBOOK_LATENCY_BUCKETS", "0.01,0.001", false),
        ("DAYBOOK_LATENCY_BUCKETS", "fast", false),
        ("DAYBOOK_RECORD_RETENTION", "P7D", true),
        ("DAYBOOK_JOURNAL_SEGMENT_BYTES", "100", false),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_daybook"))
            .args(["serve", "--check-config"])
            .env(key, value)
            .output()
            .unwrap();
        assert_eq!(out.status.success(), valid, "{key}={value}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(run(&["serve", "--check-config"]).0, Some(0));
}
