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
