//! The `dmc-hil` binary end to end: `sim` with a pty symlink, control socket and script; `ctl`; `bench`; `replay`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_dmc-hil");

/// A `dmc-hil sim` child process, killed (by its own pid) on drop.
struct SimProcess {
    child: Child,
    dir: PathBuf,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dmc-hil-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(5), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_sim(tag: &str, extra: &[&str], script: Option<&str>) -> (SimProcess, PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    let bus = dir.join("bus");
    let ctl = dir.join("bus.ctl");
    let mut cmd = Command::new(EXE);
    cmd.args(["sim", "--pty"]).arg(&bus).args(["--baud", "115200"]).args(extra);
    if let Some(text) = script {
        let file = dir.join("scenario.txt");
        std::fs::write(&file, text).expect("script");
        cmd.arg("--script").arg(file);
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn sim");
    let sim = SimProcess { child, dir };
    wait_for(&ctl);
    wait_for(&bus);
    (sim, bus, ctl)
}

fn ctl(socket: &Path, command: &str) -> Output {
    Command::new(EXE).arg("ctl").arg(socket).args(command.split_whitespace()).output().expect("run ctl")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn sim_control_script_bench_replay() {
    let (_sim, bus, socket) = spawn_sim("main", &[], Some("0.3 set sdm230 power -1234\n"));
    assert!(std::fs::symlink_metadata(&bus).is_ok_and(|m| m.file_type().is_symlink()));
    let out = ctl(&socket, "get growatt device_type");
    assert!(out.status.success() && text(&out).trim() == "ok 5100", "{}", text(&out));
    let bad = ctl(&socket, "fault nosuchunit silent on");
    assert!(!bad.status.success() && text(&bad).contains("no simulated unit"), "{}", text(&bad));
    // The script step has run by the time the bench is done.
    let capture = bus.with_file_name("run.cap");
    let bench = Command::new(EXE)
        .args(["bench", "--baud", "115200", "--reads", "3", "--timeout-ms", "150", "--write-test", "--port"])
        .arg(&bus)
        .arg("--record")
        .arg(&capture)
        .output()
        .expect("run bench");
    assert!(bench.status.success(), "{}", text(&bench));
    assert!(text(&bench).contains("PASS"));
    let power = ctl(&socket, "get sdm230 power");
    assert_eq!(text(&power).trim(), "ok -1234");
    let stats = text(&ctl(&socket, "stats"));
    assert!(stats.contains("u1.writes_applied=2"), "{stats}");
    // The VM-3P75CT is on the bus at unit 3 by default; no VregLink traffic yet.
    assert!(stats.contains("u3.read_writes=0"), "{stats}");
    let vm = ctl(&socket, "get vm3p75ct product_id");
    assert_eq!(text(&vm).trim(), format!("ok {}", 0xA1B1));
    assert!(ctl(&socket, "set 3 vreg_fail on").status.success());
    let replayed = Command::new(EXE).arg("replay").arg(&capture).output().expect("run replay");
    assert!(
        replayed.status.success() && text(&replayed).contains("all decode as recorded"),
        "{}",
        text(&replayed)
    );
}

#[test]
fn bench_exits_non_zero_with_one_line_reason() {
    let (_sim, bus, _socket) = spawn_sim("fail", &["--growatt", "none"], None);
    let out = Command::new(EXE)
        .args(["bench", "--baud", "115200", "--reads", "1", "--timeout-ms", "150", "--port"])
        .arg(&bus)
        .output()
        .expect("run bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("bench FAILED: unit 1 (growatt_min): no usable answer"), "{stderr}");
}

#[test]
fn replay_rejects_a_file_that_is_not_a_capture() {
    let dir = temp_dir("replay");
    let file = dir.join("junk.cap");
    std::fs::write(&file, b"definitely not postcard").expect("write");
    let out = Command::new(EXE).arg("replay").arg(&file).output().expect("run replay");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a dmc-hil capture"), "{}", text(&out));
}
