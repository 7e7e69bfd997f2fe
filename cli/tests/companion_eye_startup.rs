//! The companion builds its detector before it announces itself: a
//! `[camera]` whose onnxruntime provider cannot be registered stops the
//! process at start-up with the provider and the library named (no MQTT
//! connection, no eye-less companion); the CPU provider on the same
//! library starts. Real parts: the `tiancha` binary and the venv's
//! libonnxruntime (the CPU-only PyPI wheel, which has no CUDA).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{free_port, wait_for, Proc};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// $TIANCHA_VENV, else the venv $TIANCHA_PYTHON lives in, else
/// <workspace>/.venv; its onnxruntime/capi/libonnxruntime.so.*.
fn ort_library() -> PathBuf {
    let venv = std::env::var_os("TIANCHA_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("TIANCHA_PYTHON").and_then(|p| {
                Path::new(&p)
                    .parent()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf)
            })
        })
        .unwrap_or_else(|| root().join(".venv"));
    tiancha_inference::onnxruntime_in_venv(&venv).unwrap_or_else(|| {
        panic!(
            "no libonnxruntime.so.* under {}/lib/python3*/site-packages/onnxruntime/capi: \
                 run scripts/dev setup or set TIANCHA_VENV",
            venv.display()
        )
    })
}

fn config(dir: &Path, provider: &str) -> PathBuf {
    let text = format!(
        r#"drone_id = "sr-eye"
[mqtt]
host = "127.0.0.1"
port = {mqtt}
[spool]
path = "{spool}"
[autopilot]
address = "udpin:127.0.0.1:{udp}"
[camera]
uri = "test://ball"
model_manifest = "{manifest}"
width = 640
height = 480
hfov_deg = 60.0
ground_alt_m = 0.0
backend = "ort"
provider = "{provider}"
ort_library = "{lib}"
"#,
        mqtt = free_port(),
        udp = free_port(),
        spool = dir.join("spool.db").display(),
        manifest = root().join("models/centernet_mnv3_coco80.toml").display(),
        lib = ort_library().display(),
    );
    let path = dir.join(format!("companion-{provider}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_provider_that_cannot_load_stops_the_companion_before_it_announces_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "cuda");
    let mut p = Proc::tiancha(
        "companion-cuda",
        dir.path(),
        &["companion", "--config", cfg.to_str().unwrap()],
    );
    let status = p.wait(Duration::from_secs(60));
    let log = std::fs::read_to_string(&p.log).unwrap();
    assert!(!status.success(), "it must not run without its eye:\n{log}");
    assert!(
        log.contains("execution provider `cuda`")
            && log.contains("libonnxruntime.so")
            && log.contains("camera.model_manifest"),
        "the error names the provider, the library and the setting:\n{log}"
    );
    assert!(
        !log.contains("channel started"),
        "nothing is announced before the detector loads:\n{log}"
    );

    // The CPU provider on the same library: the detector loads and the
    // companion goes on to its channel.
    let cfg = config(dir.path(), "cpu");
    let mut p = Proc::tiancha(
        "companion-cpu",
        dir.path(),
        &["companion", "--config", cfg.to_str().unwrap()],
    );
    wait_for(
        "the channel after the detector",
        Duration::from_secs(60),
        || {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            assert!(p.is_running(), "the companion stopped:\n{}", p.log_tail(40));
            (log.contains("onnxruntime/cpu") && log.contains("channel started")).then_some(())
        },
    );
    let log = std::fs::read_to_string(&p.log).unwrap();
    assert!(
        log.find("eye: model").unwrap() < log.find("channel started").unwrap(),
        "the detector first:\n{log}"
    );
    p.kill();
}
