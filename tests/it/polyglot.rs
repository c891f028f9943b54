//! A real client in another language: Python grpcio, with stubs generated from `proto/`
//! by grpcio-tools (installed by `scripts/test`), drives a conversation through a server.

use daybook::server::config::Config;

use super::server::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_runs_a_conversation() {
    let text = run_script("conversation.py", "2025-06-20T12:00:00Z").await;
    assert!(text.contains("python client: conversation checked"), "{text}");
}

/// RULEBOOK part two from Python: a dar meter and an outcome meter, a revoked outcome and
/// a voided consumer; per-meter usage and the export checked there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_runs_meters_outcomes_and_a_void() {
    let text = run_script("meters.py", "2025-06-25T12:00:00Z").await;
    assert!(text.contains("python client: meters checked"), "{text}");
}

/// Runs `tests/python/SCRIPT STUBS ADDR` against a fresh server whose clock reads `now`;
/// returns what it printed, having checked that it succeeded.
async fn run_script(script: &str, now: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let stubs = generate_stubs(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Harness::start(&data, now, Config::default()).await;
    let addr = server.tcp.to_string();
    let script = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let stubs_arg = stubs.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg(script).arg(stubs_arg).arg(addr).output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{text}");
    server.stop().await;
    text
}

/// Python stubs generated from `proto/` by grpcio-tools (installed by `scripts/test`).
fn generate_stubs(dir: &std::path::Path) -> std::path::PathBuf {
    let stubs = dir.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let protos: Vec<String> = std::fs::read_dir(format!("{root}/proto/daybook/v1"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".proto"))
        .collect();
    let generated = std::process::Command::new("python3")
        .args(["-m", "grpc_tools.protoc", &format!("-I{root}/proto")])
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .args(&protos)
        .output()
        .expect("python3 runs");
    assert!(
        generated.status.success(),
        "grpcio-tools must be installed (scripts/test installs it): {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    stubs
}
